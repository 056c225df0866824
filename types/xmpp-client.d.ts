// Minimal typings for @xmpp/client 0.13 as the tests use it (agents' Jabber clients).
declare module "@xmpp/client" {
  import type { Element } from "@xmpp/xml";
  import type { Socket } from "node:net";
  import type { EventEmitter } from "node:events";
  import xmlFn from "@xmpp/xml";

  export interface Client extends EventEmitter {
    status: string;
    socket: Socket | null;
    reconnect: { stop(): void };
    iqCaller: { get(element: Element, to?: string): Promise<Element>; set(element: Element, to?: string): Promise<Element>; request(stanza: Element, timeout?: number): Promise<Element> };
    iqCallee: {
      get(ns: string, name: string, handler: (ctx: { element: Element; stanza: Element }) => Element | true | Promise<Element | true>): void;
      set(ns: string, name: string, handler: (ctx: { element: Element; stanza: Element }) => Element | true): void;
    };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
  }
  export function client(options: { service: string; domain: string; username?: string; password?: string; resource?: string }): Client;
  export const xml: typeof xmlFn;
}
