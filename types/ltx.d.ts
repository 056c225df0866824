// ltx (the XML library under @xmpp/xml): only what the tests use to read fixtures.
declare module "ltx" {
  import type { Element } from "@xmpp/xml";
  export function parse(xml: string): Element;
  export function equal(a: Element, b: Element): boolean;
}
