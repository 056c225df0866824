import { ExpiringCache } from "../expiring-cache.js";
import type { Agent, Site, Store } from "./types.js";

/**
 * Sites and their agents are read on every stanza and frame but change only when an admin
 * edits them, so each process keeps them for a moment instead of asking the store each
 * time. Writes through this process drop its entries at once; other processes see a
 * change within `ttlMs`.
 *
 * A Proxy keeps this a decorator: every other Store method passes through untouched.
 */
export function withSiteCache(store: Store, options: { ttlMs: number; now(): number }): Store {
  const sites = new ExpiringCache<Site | null>(options);
  const agents = new ExpiringCache<Agent[]>(options);
  const forget = (siteId: string) => {
    sites.delete(siteId);
    agents.delete(siteId);
  };

  const overrides: Partial<Store> = {
    getSite: (siteId) => sites.get(siteId, () => store.getSite(siteId)),
    listAgents: (siteId) => agents.get(siteId, () => store.listAgents(siteId)),
    putSite: async (site) => {
      forget(site.id);
      await store.putSite(site);
      forget(site.id);
    },
    deleteSite: async (siteId) => {
      forget(siteId);
      const deleted = await store.deleteSite(siteId);
      forget(siteId);
      return deleted;
    },
    putAgent: async (siteId, agent) => {
      forget(siteId);
      await store.putAgent(siteId, agent);
      forget(siteId);
    },
    removeAgent: async (siteId, jid) => {
      forget(siteId);
      const removed = await store.removeAgent(siteId, jid);
      forget(siteId);
      return removed;
    },
  };

  const bound = new Map<PropertyKey, unknown>(); // bind each method once, not on every call
  return new Proxy(store, {
    get(target, property, receiver) {
      if (typeof property === "string" && property in overrides) return overrides[property as keyof Store];
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      let method = bound.get(property);
      if (!method) bound.set(property, (method = value.bind(target)));
      return method;
    },
  });
}
