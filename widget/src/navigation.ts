// Reports the page the visitor is on — at load and after every navigation, including
// single-page apps that change the URL with the History API without reloading.

export interface Page {
  url: string;
  title: string;
}

// SPA routers usually set document.title a moment after pushState; waiting briefly
// reports the new page once with its real title instead of twice.
const SETTLE_MS = 300;

export function watchNavigation(win: Window, onPage: (page: Page) => void): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const report = () => onPage({ url: win.location.href, title: win.document.title });
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(report, SETTLE_MS);
  };

  // There is no event for pushState/replaceState, so wrap them (keeping any wrapper a
  // router or analytics script installed before us).
  const history = win.history;
  for (const method of ["pushState", "replaceState"] as const) {
    const original = history[method];
    history[method] = function (this: History, ...args: Parameters<History["pushState"]>) {
      const result = original.apply(this, args);
      soon();
      return result;
    };
  }
  win.addEventListener("popstate", soon);
  win.addEventListener("hashchange", soon);
  // Title changes without navigation (e.g. "(3) Inbox") are worth reporting too: the
  // agent sees the title as the visitor's status. Unchanged pages are dropped upstream.
  const head = win.document.head;
  if (head && typeof MutationObserver === "function") {
    new MutationObserver(soon).observe(head, { subtree: true, childList: true, characterData: true });
  }
  report();
}
