import { describe, expect, it } from "vitest";
import { newProcessId, processOfStanzaId, stanzaIdFactory } from "../../bridge/process-ids.js";

// IQ answers that ejabberd balanced to another process go back to the process named at the
// start of their id; an id that names none must not be published anywhere.

describe("the process an IQ id belongs to", () => {
  it("reads it back from every id this process makes", () => {
    const processId = newProcessId();
    const newId = stanzaIdFactory(processId);
    for (let i = 0; i < 50; i++) expect(processOfStanzaId(newId())).toBe(processId);
  });

  it.each([
    ["3fa2c01b-1k", "3fa2c01b"],
    ["3fa2c01b-ping7", "3fa2c01b"],
    ["nodash", null],
    ["-1k", null],
    ["3fa2c01b", null],
    ["xyz-1", null],
    ["3FA2C01B-1", null],
    ["3fa2c01b0-1", null],
    ["parley:bus:p:x-1", null],
    ["", null],
  ])("%j → %j", (id, owner) => {
    expect(processOfStanzaId(id)).toBe(owner);
  });
});
