// Minimal typings for the parts of xmpp.js 0.13 (CommonJS, untyped) that Parley calls.
// Keep this small: add a member only when the bridge starts using it.

declare module "@xmpp/xml" {
  export type Node = Element | string;
  export class Element {
    constructor(name: string, attrs?: Record<string, string | undefined>);
    name: string;
    attrs: Record<string, string | undefined>;
    children: Node[];
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getNS(): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    append(...nodes: Node[]): Element;
    c(name: string, attrs?: Record<string, string | undefined>): Element;
    toString(): string;
  }
  export class Parser {
    write(data: string): void;
    end(data?: string): void;
    on(event: "element", listener: (el: Element) => void): this;
    on(event: "error", listener: (err: Error) => void): this;
  }
  export function escapeXMLText(s: string): string;
  function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: (Node | Node[] | null | undefined | false)[]): Element;
  namespace xml {
    export { Element, Parser, escapeXMLText };
  }
  export default xml;
}

declare module "@xmpp/jid" {
  export class JID {
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    toString(): string;
    getLocal(unescape?: boolean): string;
    getDomain(): string;
    getResource(): string;
    equals(other: JID): boolean;
  }
  function jid(address: string): JID;
  namespace jid {
    export { JID };
  }
  export default jid;
}

declare module "@xmpp/component" {
  import type { Element } from "@xmpp/xml";
  import type { Socket } from "node:net";
  import type { EventEmitter } from "node:events";

  export interface IqContext {
    stanza: Element;
    element: Element;
    from: { toString(): string } | null;
  }
  export interface Component extends EventEmitter {
    status: string;
    socket: Socket | null;
    options: { service: string; domain: string };
    reconnect: { stop(): void; reconnect(): Promise<void> };
    iqCallee: {
      get(ns: string, name: string, handler: (ctx: IqContext) => Element | true | Promise<Element | true>): void;
      set(ns: string, name: string, handler: (ctx: IqContext) => Element | true | Promise<Element | true>): void;
    };
    iqCaller: {
      request(stanza: Element, timeout?: number): Promise<Element>;
    };
    middleware: { use(fn: (ctx: IqContext & { stanza: Element }, next: () => Promise<unknown>) => unknown): void };
    start(): Promise<void>;
    stop(): Promise<void>;
    connect(service: string): Promise<void>;
    open(options: { domain: string }): Promise<void>;
    disconnect(timeout?: number): Promise<void>;
    send(el: Element): Promise<void>;
    write(s: string): Promise<void>;
    _onData(data: unknown): void;
  }
  export function component(options: { service: string; domain: string; password: string }): Component;
}
