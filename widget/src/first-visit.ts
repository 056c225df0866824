// The first connection of a site's visitor, made by one tab at a time. Two tabs opened at
// the same instant on a first visit (a restored browser session, links opened in new
// tabs) would each connect without a token and become two visitors; the last token
// written to localStorage wins and the other tab's conversation is orphaned. So a tab
// without a token waits until no other tab of the site is making that first connection,
// then connects with whatever token the other one stored, if any.

/**
 * How long a tab that waited its turn waits for the other tab's token to show: the lock and
 * localStorage reach it by different ways, so the lock may come first. Only if the tab
 * ahead closed without a welcome does the wait run out.
 */
const TOKEN_SHOWS_MS = 1000;
/** How long a fallback claim lasts unless renewed: a tab closed mid-claim holds the others back no longer. */
const CLAIM_MS = 10_000;
/** After writing its claim, how long a tab waits for a claim another tab wrote in the same instant to show. */
const SETTLE_MS = 100;

export interface FirstVisitEnv {
  /** `navigator.locks`: missing before Safari 15.4 and on pages that are not a secure context. */
  locks: LockManager | undefined;
  storage: Storage;
  win: Window;
  /** Whether a token of the site is stored (by this tab or another). */
  hasToken: () => boolean;
  /** Tells this tab's claim from another's in the fallback. */
  tabId: string;
}

/**
 * Calls `connect` once this tab may make the site's first connection. Returns `done`, to
 * call once the tab's token is stored (its first welcome): the next waiting tab then
 * connects and finds that token. A tab that never gets a welcome keeps the others
 * waiting, which costs nothing: they could not connect either.
 */
export function connectOneTabAtATime(siteId: string, env: FirstVisitEnv, connect: () => void): () => void {
  return env.locks ? withLock(env.locks, "parley:first-visit:" + siteId, env, connect) : withClaim("parley:" + siteId + ":first-visit", env, connect);
}

/**
 * The Web Locks API: exclusive across the origin's tabs, granted in request order, and
 * released by the browser if the tab goes away.
 */
function withLock(locks: LockManager, name: string, env: FirstVisitEnv, connect: () => void): () => void {
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    connect();
  };
  const first = () => {
    start();
    return held;
  };
  // Free at once: no other tab is connecting. Otherwise wait for the turn, then for the
  // token the tab ahead stored.
  void locks
    .request(name, { ifAvailable: true }, (lock) =>
      lock
        ? first()
        : locks.request(name, async () => {
            await tokenShows(env);
            return first();
          }),
    )
    // Refused (e.g. a sandboxed iframe): connect uncoordinated, as before locks existed.
    .catch(start);
  return () => release();
}

function tokenShows({ win, hasToken }: FirstVisitEnv): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!hasToken()) return;
      done();
    };
    const done = () => {
      win.removeEventListener("storage", check);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, TOKEN_SHOWS_MS);
    win.addEventListener("storage", check);
    check();
  });
}

/**
 * Fallback without Web Locks: a claim in localStorage, written, then read back after a
 * moment; of tabs writing in the same instant only the last writer finds its own claim.
 * localStorage has no compare-and-set, so two tabs whose writes reach each other later
 * than SETTLE_MS could still both go ahead — the only race left, far narrower than none.
 */
function withClaim(key: string, env: FirstVisitEnv, connect: () => void): () => void {
  const { storage, win, tabId } = env;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let renewal: ReturnType<typeof setInterval> | undefined;
  let holding = false;

  const read = (): { tab: string; until: number } | null => {
    const claim: unknown = JSON.parse(storage.getItem(key) || "null");
    if (typeof claim !== "object" || claim === null) return null;
    const c = claim as Record<string, unknown>;
    return typeof c.tab === "string" && typeof c.until === "number" ? { tab: c.tab, until: c.until } : null;
  };
  const write = () => storage.setItem(key, JSON.stringify({ tab: tabId, until: Date.now() + CLAIM_MS }));
  // The tab ahead released its claim: its token is stored.
  const onStorage = (e: StorageEvent) => {
    if (e.key === key && e.newValue === null) attempt();
  };
  const go = () => {
    win.removeEventListener("storage", onStorage);
    clearTimeout(timer);
    connect();
  };

  function attempt(): void {
    clearTimeout(timer);
    try {
      const claim = read();
      const now = Date.now();
      if (claim && claim.tab !== tabId && claim.until > now) {
        timer = setTimeout(attempt, claim.until - now);
        return;
      }
      write();
      timer = setTimeout(() => {
        try {
          if (read()?.tab !== tabId) return attempt();
        } catch {
          return go();
        }
        holding = true;
        // Renewed while connecting, so a slow welcome does not let the next tab in.
        renewal = setInterval(() => {
          try {
            write();
          } catch {
            clearInterval(renewal);
          }
        }, CLAIM_MS / 2);
        go();
      }, SETTLE_MS);
    } catch {
      // Storage refuses writes (quota, disabled meanwhile): no coordination possible.
      go();
    }
  }

  win.addEventListener("storage", onStorage);
  attempt();
  return () => {
    if (!holding) return;
    holding = false;
    clearInterval(renewal);
    try {
      if (read()?.tab === tabId) storage.removeItem(key);
    } catch {
      // Nothing to release in a storage that stopped working; the claim lapses by itself.
    }
  };
}
