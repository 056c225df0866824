// The visitor's resume token and unsent messages, kept in localStorage per site so a
// reload (or another page of the site) resumes the same conversation.

import type { Persisted } from "./session.js";

// Bump when the stored shape changes; an older record is then ignored, not misread.
const VERSION = 1;

export interface Store {
  load(): Persisted | null;
  save(value: Persisted): void;
}

/**
 * localStorage may be missing or throw (Safari private mode, sandboxed iframes, storage
 * disabled); the widget then still works, it just cannot resume after a reload.
 */
export function siteStore(storage: Storage | null, siteId: string): Store {
  const key = "parley:" + siteId;
  let last = "";
  return {
    load() {
      try {
        const raw = storage && storage.getItem(key);
        return raw ? validate(JSON.parse(raw)) : null;
      } catch {
        return null;
      }
    },
    save(value) {
      const raw = JSON.stringify({ v: VERSION, ...value });
      if (raw === last) return;
      last = raw;
      try {
        if (storage) storage.setItem(key, raw);
      } catch {
        // Quota exceeded or storage disabled: nothing useful to do.
      }
    },
  };
}

function validate(v: unknown): Persisted | null {
  if (typeof v !== "object" || v === null) return null;
  const r = v as Record<string, unknown>;
  if (r.v !== VERSION) return null;
  const token = typeof r.token === "string" ? r.token : null;
  const pending = Array.isArray(r.pending)
    ? r.pending.filter(
        (p): p is Persisted["pending"][number] =>
          typeof p === "object" && p !== null && typeof p.id === "string" && typeof p.text === "string" && typeof p.ts === "number",
      )
    : [];
  const i = r.identity as Record<string, unknown> | null | undefined;
  const identity = i && typeof i.name === "string" && typeof i.email === "string" ? { name: i.name, email: i.email } : null;
  const unread = typeof r.unread === "number" && r.unread >= 0 ? r.unread : 0;
  const seen = typeof r.seen === "string" ? r.seen : null;
  return { token, pending, identity, expanded: r.expanded === true, unread, seen };
}
