import { describe, expect, it } from "vitest";
import { agentBodySchema, bareJidSchema, siteBodySchema, sitesFileSchema } from "../../bridge/site-schema.js";

// Admin text ends up in XML (the desk's roster name and group, nicks, notices) and in
// visitors' frames: a character XML 1.0 cannot carry makes ejabberd drop the component
// stream (not-well-formed), so it is refused at the API with the field named.

const UNSENDABLE: [string, string][] = [
  ["NUL", "\u0000"],
  ["SOH", "\u0001"],
  ["vertical tab", "\u000B"],
  ["form feed", "\u000C"],
  ["unit separator", "\u001F"],
  ["a lone high surrogate", "\uD800"],
  ["a lone low surrogate", "\uDC00"],
  ["U+FFFE", "\uFFFE"],
  ["U+FFFF", "\uFFFF"],
];

const firstIssuePath = (result: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }) => result.error?.issues[0]?.path.join(".");

describe("admin text that XML cannot carry", () => {
  it.each(UNSENDABLE)("refuses %s in the site's name, welcome and offline message, naming the field", (_what, char) => {
    for (const field of ["name", "welcome", "offlineMessage"]) {
      const result = siteBodySchema.safeParse({ name: "Acme", [field]: `Bad${char}Text` });
      expect(result.success, field).toBe(false);
      expect(firstIssuePath(result)).toBe(field);
    }
  });

  it.each(UNSENDABLE)("refuses %s in an agent's name and JID", (_what, char) => {
    expect(firstIssuePath(agentBodySchema.safeParse({ name: `An${char}n` }))).toBe("name");
    expect(bareJidSchema.safeParse(`ann${char}@example.com`).success).toBe(false);
  });

  it("refuses it in a sites file too, naming the site and agent", () => {
    const result = sitesFileSchema.safeParse({ sites: [{ id: "acme", name: "Acme", agents: [{ jid: "ann@example.com", name: "Ann\u0001" }] }] });
    expect(firstIssuePath(result)).toBe("sites.0.agents.0.name");
    expect(firstIssuePath(sitesFileSchema.safeParse({ sites: [{ id: "acme", name: "Bad\u0001Name" }] }))).toBe("sites.0.name");
  });

  it("accepts tabs, line breaks, emoji and any other text", () => {
    expect(siteBodySchema.safeParse({ name: "Acme 😀 Ñ", welcome: "Hi!\nHow can we help?\r\n\tAsk away.", offlineMessage: "<away> & \"back\" soon" }).success).toBe(true);
    expect(agentBodySchema.safeParse({ name: "Zoë 👩‍💻" }).success).toBe(true);
  });

  it("prepares agent JIDs as XMPP servers do (nodeprep, nameprep), so they match what ejabberd puts in stanzas", () => {
    const prepared = (jid: string) => bareJidSchema.parse(jid);
    expect(prepared(" Agent1@LocalHost ")).toBe("agent1@localhost");
    expect(prepared("Straße@example.com")).toBe("strasse@example.com"); // ejabberd: strasse
    expect(prepared("ΟΔΟΣ@example.gr")).toBe("οδοσ@example.gr"); // final sigma folds to σ
    expect(prepared("ﬀ@example.com")).toBe("ff@example.com"); // NFKC
    expect(prepared("José@MÜNCHEN.example")).toBe("josé@münchen.example"); // internationalised domain
    expect(prepared("ı@example.com")).toBe("ı@example.com"); // already folded: kept
    for (const bad of ["ann@example.com/phone", "ann", "ann @example.com", "@example.com", "ann@exa mple.com"]) expect(bareJidSchema.safeParse(bad).success, bad).toBe(false);
  });

  it("says a webhook URL must be http(s), whatever else is wrong with it", () => {
    for (const bad of ["ftp://hooks.example/x", "file:///etc/passwd", "not a url", "javascript:alert(1)"]) {
      const result = siteBodySchema.safeParse({ name: "Acme", webhookUrl: bad });
      expect(result.success, bad).toBe(false);
      expect(result.error?.issues[0]?.message, bad).toBe("must be an http:// or https:// URL");
    }
    expect(siteBodySchema.safeParse({ name: "Acme", webhookUrl: "https://hooks.example/parley?x=1" }).success).toBe(true);
  });
});


describe("origins and webhook secrets as admins write them", () => {
  it("keeps an origin as browsers send it: lower-case host, no trailing slash, default port dropped", () => {
    const origins = (list: string[]) => siteBodySchema.parse({ name: "Acme", origins: list }).origins;
    expect(origins(["http://localhost:3000/", "https://WWW.Example.com", " https://shop.example:443 ", "http://[::1]:8080"])).toEqual([
      "http://localhost:3000",
      "https://www.example.com",
      "https://shop.example",
      "http://[::1]:8080",
    ]);
  });

  it("refuses what an origin cannot say (a path, a query, credentials, another scheme), naming the entry", () => {
    for (const bad of ["https://example.com/shop", "https://example.com/?a=1", "https://example.com/#top", "https://user:pw@example.com", "ftp://example.com", "example.com", "*"]) {
      const result = siteBodySchema.safeParse({ name: "Acme", origins: [bad] });
      expect(result.success, bad).toBe(false);
      expect(firstIssuePath(result), bad).toBe("origins.0");
    }
  });

  it("accepts a webhook secret of any length from 1 to 256 characters", () => {
    for (const secret of ["s", "secret", "x".repeat(256)]) expect(siteBodySchema.safeParse({ name: "Acme", webhookSecret: secret }).success, secret).toBe(true);
    for (const bad of ["", "x".repeat(257)]) expect(firstIssuePath(siteBodySchema.safeParse({ name: "Acme", webhookSecret: bad }))).toBe("webhookSecret");
  });
});
