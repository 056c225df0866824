import { describe, expect, it } from "vitest";
import { isAnswerFrom } from "../../stanza-mappers/iq-answers.js";

describe("isAnswerFrom", () => {
  it.each([
    ["ann@localhost", "ann@localhost", true],
    ["ann@localhost", "Ann@localhost/phone", true],
    ["ann@localhost/phone", "ann@localhost/phone", true],
    ["ann@localhost", "localhost", true],
    ["localhost", "localhost", true],
    ["ann@localhost", "mallory@localhost/x", false],
    ["ann@localhost", "evil.example", false],
    ["ann@localhost", "ann@localhost.evil.example", false],
    ["ann@localhost", undefined, false],
    ["ann@localhost", "", false],
  ])("an answer to %s from %s counts: %s", (to, from, counts) => {
    expect(isAnswerFrom(to, from)).toBe(counts);
  });
});
