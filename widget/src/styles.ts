// Styles inside the shadow root. The host page's CSS cannot reach in here; what it can
// still do to the host element itself is countered by HOST_STYLE below.

/**
 * Inline, !important style for the host element. Inline !important beats any
 * stylesheet rule, even `* { display: none !important }`; `all: initial` stops
 * inherited page styles (font, colour, transforms, visibility) from leaking in.
 */
export function hostStyle(position: "left" | "right"): string {
  const [near, far] = position === "left" ? ["left", "right"] : ["right", "left"];
  return [
    "all:initial",
    "display:block",
    "position:fixed",
    "bottom:0",
    "top:auto",
    near + ":0",
    far + ":auto",
    "width:auto",
    "height:auto",
    "margin:0",
    "padding:0",
    "border:0",
    "z-index:" + hostLayer(false),
    "visibility:visible",
    "opacity:1",
    "transform:none",
    "pointer-events:none",
  ]
    .map((d) => d + "!important")
    .join(";");
}

/**
 * The host's z-index: the highest there is while the box is open, one below while it is
 * closed, so that an open box (full screen on a phone) covers the launcher of another
 * site's widget in the other corner.
 */
export function hostLayer(expanded: boolean): string {
  return expanded ? "2147483647" : "2147483646";
}

export const CSS = `
:host{all:initial;direction:ltr}
.root{--accent:#2356d8;--on-accent:#fff;position:relative;display:flex;flex-direction:column;align-items:flex-end;gap:14px;
 margin:0 20px 20px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2433;
 -webkit-font-smoothing:antialiased;pointer-events:none}
.root.left{align-items:flex-start}
.root *{box-sizing:border-box}
.root>*{pointer-events:auto}
[hidden]{display:none!important}
button,textarea,input{font:inherit;color:inherit}
button{cursor:pointer}
:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}

.launcher{position:relative;width:60px;height:60px;border:0;border-radius:50%;background:var(--accent);color:var(--on-accent);
 display:grid;place-items:center;box-shadow:0 6px 20px rgba(16,24,40,.22),0 2px 6px rgba(16,24,40,.12);transition:transform .15s}
.launcher:hover{transform:scale(1.05)}
.launcher svg{width:28px;height:28px}
.open .ic-chat,.root:not(.open) .ic-down{display:none}
.badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#e5383b;color:#fff;
 font-size:12px;font-weight:700;line-height:22px;text-align:center;box-shadow:0 0 0 2px #fff}

.panel{width:376px;height:min(600px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:16px;
 overflow:hidden;box-shadow:0 12px 48px rgba(16,24,40,.24),0 2px 8px rgba(16,24,40,.08);animation:rise .18s ease-out}
@keyframes rise{from{opacity:0;transform:translateY(12px)}}
header{display:flex;align-items:center;gap:12px;padding:16px 14px 16px 18px;background:var(--accent);color:var(--on-accent)}
.avatar{flex:none;width:38px;height:38px;border-radius:50%;display:grid;place-items:center;font-weight:700;font-size:15px;
 background:rgba(255,255,255,.22);color:inherit}
.avatar svg{width:20px;height:20px}
.heading{flex:1;min-width:0}
h2{margin:0;font-size:16px;font-weight:650;line-height:1.25;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.status{margin:2px 0 0;font-size:12.5px;opacity:.88;display:flex;align-items:center;gap:6px}
.dot{width:8px;height:8px;border-radius:50%;background:#3ddc84;box-shadow:0 0 0 2px rgba(255,255,255,.35)}
.dot.off{background:#c3c8d1}
.close{flex:none;width:34px;height:34px;border:0;border-radius:8px;background:transparent;color:inherit;display:grid;place-items:center}
.close:hover{background:rgba(255,255,255,.16)}
.close svg{width:20px;height:20px}

.log{flex:1;overflow-y:auto;padding:18px 16px 8px;background:#f5f7fa;display:flex;flex-direction:column;gap:4px;overscroll-behavior:contain}
.msg{max-width:82%;display:flex;flex-direction:column;align-items:flex-start}
.msg+.msg{margin-top:2px}
.msg.visitor{align-self:flex-end;align-items:flex-end}
.who{font-size:12px;color:#667085;margin:8px 0 3px 4px;overflow-wrap:anywhere}
.bubble{padding:9px 13px;border-radius:16px 16px 16px 4px;background:#fff;box-shadow:0 1px 2px rgba(16,24,40,.08);
 white-space:pre-wrap;overflow-wrap:anywhere}
.visitor .bubble{border-radius:16px 16px 4px 16px;background:var(--accent);color:var(--on-accent);box-shadow:none}
.bubble a{color:inherit;text-decoration:underline}
.meta{font-size:11.5px;color:#8a93a3;margin:3px 4px 6px;display:flex;align-items:center;gap:4px}
.meta svg{width:14px;height:14px}
.meta.delivered{color:#1f9d55}
.meta.failed{color:#c2292e}
.retry{border:0;background:none;padding:0;color:#c2292e;text-decoration:underline}
.notice{align-self:center;max-width:100%;margin:10px 0;padding:3px 12px;font-size:12px;color:#667085;background:#e9edf2;border-radius:10px;text-align:center;overflow-wrap:anywhere}

.typing{display:flex;align-items:center;gap:8px;padding:4px 18px 8px;background:#f5f7fa;font-size:12.5px;color:#667085}
.dots{display:inline-flex;gap:3px}
.dots i{width:6px;height:6px;border-radius:50%;background:#98a2b3;animation:blink 1.2s infinite both}
.dots i:nth-child(2){animation-delay:.2s}.dots i:nth-child(3){animation-delay:.4s}
@keyframes blink{0%,80%,100%{opacity:.3}40%{opacity:1}}
.banner{padding:9px 16px;font-size:13px;background:#fff8e6;color:#7a5a00;border-top:1px solid #f3e3b5}
.banner.link{background:#eef2f7;color:#475467;border-color:#e1e6ee}
.unavailable .composer,.unavailable .offline{display:none}

.composer{display:flex;align-items:flex-end;gap:8px;padding:12px;border-top:1px solid #e6e9ef;background:#fff}
.composer textarea{flex:1;min-height:40px;max-height:128px;resize:none;border:1px solid #d5dae2;border-radius:20px;padding:9px 14px;
 line-height:1.45;background:#fff;outline:none}
.composer textarea:focus{border-color:var(--accent);box-shadow:0 0 0 3px color-mix(in srgb,var(--accent) 14%,transparent)}
.send{flex:none;width:40px;height:40px;border:0;border-radius:50%;background:var(--accent);color:var(--on-accent);display:grid;place-items:center}
.send svg{width:18px;height:18px}
.offline{flex:none;padding:14px 16px 16px;border-top:1px solid #e6e9ef;background:#fff;display:flex;flex-direction:column;gap:10px;overflow-y:auto;max-height:70%}
.offline p{margin:0;color:#475467;font-size:13px}
.offline label{display:flex;flex-direction:column;gap:4px;font-size:12.5px;font-weight:600;color:#344054}
.offline input,.offline textarea{font-weight:400;border:1px solid #d5dae2;border-radius:8px;padding:8px 10px;background:#fff;outline:none}
.offline textarea{resize:vertical;min-height:72px}
.offline input:focus,.offline textarea:focus{border-color:var(--accent)}
.submit{border:0;border-radius:8px;padding:10px;background:var(--accent);color:var(--on-accent);font-weight:600}

@media (max-width:480px){
 .root{margin:0 14px 14px}
 .panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0;animation:none}
 .root.open .launcher{display:none}
 .composer textarea{font-size:16px}
}
@media (prefers-reduced-motion:reduce){.panel,.dots i,.launcher{animation:none;transition:none}}
`;
