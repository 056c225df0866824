import { describe, expect, it } from "vitest";
import { siteStore } from "../../widget/src/storage.js";

/** The part of the Web Storage API the widget uses, over a Map. */
function memoryStorage(): Storage & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    get length() {
      return data.size;
    },
    clear: () => data.clear(),
    getItem: (k) => data.get(k) ?? null,
    key: (i) => [...data.keys()][i] ?? null,
    removeItem: (k) => void data.delete(k),
    setItem: (k, v) => void data.set(k, v),
  };
}

const record = { token: "tok", pending: [{ id: "c1", text: "hi", ts: 1 }], identity: { name: "Ann", email: "a@x.io" }, expanded: true, unread: 2, seen: "1700000000000-0" };

describe("widget storage", () => {
  it("keeps one record per site", () => {
    const storage = memoryStorage();
    siteStore(storage, "acme").save(record);
    expect(siteStore(storage, "acme").load()).toEqual(record);
    expect(siteStore(storage, "other").load()).toBeNull();
  });

  it("ignores a record of another version or shape", () => {
    const storage = memoryStorage();
    storage.setItem("parley:acme", JSON.stringify({ ...record, v: 99 }));
    expect(siteStore(storage, "acme").load()).toBeNull();
    storage.setItem("parley:acme", "not json");
    expect(siteStore(storage, "acme").load()).toBeNull();
    storage.setItem("parley:acme", JSON.stringify({ v: 1, token: 5, pending: [{ id: 1 }], identity: "x" }));
    expect(siteStore(storage, "acme").load()).toEqual({ token: null, pending: [], identity: null, expanded: false, unread: 0, seen: null });
  });

  it("works without storage, and when storage throws", () => {
    expect(siteStore(null, "acme").load()).toBeNull();
    const throwing = { ...memoryStorage(), getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("quota"); } };
    const store = siteStore(throwing, "acme");
    expect(() => store.save(record)).not.toThrow();
    expect(store.load()).toBeNull();
  });
});
