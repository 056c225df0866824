import { randomBytes } from "node:crypto";

/**
 * Every process has a random id (8 hex digits), which names its bus channel and starts the
 * id of every stanza it sends: `<processId>-<counter in base 36>`, e.g. `3fa2c01b-1k`.
 * ejabberd 23.01 balances IQ answers across a domain's connections, so a process that gets
 * an answer it did not ask for reads the asker from the id and forwards it (see main.ts).
 */
const STANZA_ID = /^([0-9a-f]{8})-/;

export function newProcessId(): string {
  return randomBytes(4).toString("hex");
}

export function stanzaIdFactory(processId: string): () => string {
  let counter = 0;
  return () => `${processId}-${(++counter).toString(36)}`;
}

/**
 * `processOfStanzaId("3fa2c01b-1k")` → `"3fa2c01b"`; an id no process made (`"nodash"`,
 * `"x-1"`, anything a client invents) → null: there is nobody to forward it to.
 */
export function processOfStanzaId(id: string): string | null {
  return STANZA_ID.exec(id)?.[1] ?? null;
}
