import { describe, expect, it } from "vitest";
import { parseClientFrame } from "../../stanza-mappers/parse-client-frame.js";

const parse = (s: string) => parseClientFrame(s, false);

describe("parseClientFrame", () => {
  it("accepts each frame type of the contract", () => {
    expect(parse('{"type":"message","id":"c1","text":"hello"}')).toEqual({ ok: true, frame: { type: "message", id: "c1", text: "hello" } });
    expect(parse('{"type":"typing","state":"composing"}')).toMatchObject({ ok: true });
    expect(parse('{"type":"page","url":"https://acme.test/pricing","title":"Pricing"}')).toMatchObject({ ok: true });
    expect(parse('{"type":"identify","name":"Ana","email":"ana@example.com"}')).toMatchObject({ ok: true });
    expect(parse('{"type":"identify","name":"Ana","email":""}')).toMatchObject({ ok: true }); // a form's empty field
    expect(parse('{"type":"ping"}')).toEqual({ ok: true, frame: { type: "ping" } });
  });

  it.each([
    ["not JSON", "nope", "bad_frame"],
    ["a JSON array", "[1,2]", "bad_frame"],
    ["a JSON string", '"message"', "bad_frame"],
    ["an unknown type", '{"type":"launch"}', "invalid"],
    ["a missing type", '{"id":"x"}', "invalid"],
    ["a missing text", '{"type":"message","id":"c1"}', "invalid"],
    ["a number as text", '{"type":"message","id":"c1","text":5}', "invalid"],
    ["an empty id", '{"type":"message","id":"","text":"hi"}', "invalid"],
    ["an id of 65 chars", JSON.stringify({ type: "message", id: "x".repeat(65), text: "hi" }), "invalid"],
    ["a text of 4001 chars", JSON.stringify({ type: "message", id: "c", text: "x".repeat(4001) }), "invalid"],
    ["a blank text", '{"type":"message","id":"c","text":"   "}', "invalid"],
    ["a NUL in text", JSON.stringify({ type: "message", id: "c", text: "a\u0000b" }), "invalid"],
    ["a lone surrogate", '{"type":"message","id":"c","text":"a\\ud800b"}', "invalid"],
    ["a lone low surrogate after a pair", '{"type":"message","id":"c","text":"\\ud83d\\ude00\\ude00"}', "invalid"],
    ["a high surrogate at the end", '{"type":"message","id":"c","text":"ok\\ud83d"}', "invalid"],
    ["an unknown field", '{"type":"ping","x":1}', "invalid"],
    ["a bad typing state", '{"type":"typing","state":"shouting"}', "invalid"],
    ["a bad email", '{"type":"identify","email":"not-an-email"}', "invalid"],
  ])("refuses %s with %s", (_name, frame, code) => {
    expect(parse(frame)).toMatchObject({ ok: false, code });
  });

  it("answers a type nested as deep as 16 KiB allows with invalid, instead of throwing", () => {
    const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    expect(parse(`{"type":${deep(8150)}}`)).toEqual({ ok: false, code: "invalid", message: "unknown frame type (an array)" });
    expect(parse(`{"type":{"a":${deep(8140)}}}`)).toEqual({ ok: false, code: "invalid", message: "unknown frame type (an object)" });
    expect(parse(`{"type":"${"x".repeat(100)}"}`)).toMatchObject({ message: `unknown frame type "${"x".repeat(40)}"` });
    expect(parse('{"type":7}')).toMatchObject({ message: "unknown frame type (a number)" });
    expect(parse("{}")).toMatchObject({ message: "unknown frame type undefined" });
  });

  it("counts text length in characters, not UTF-16 units", () => {
    expect(parse(JSON.stringify({ type: "message", id: "c", text: "😀".repeat(4000) }))).toMatchObject({ ok: true });
    expect(parse(JSON.stringify({ type: "message", id: "c", text: "😀".repeat(4001) }))).toMatchObject({ ok: false, code: "invalid" });
  });

  it.each([
    ["a javascript: URL", "javascript:alert(1)"],
    ["a javascript: URL with a line break inside", "java\nscript:alert(1)"],
    ["a data: URL", "data:text/html,<script>alert(1)</script>"],
    ["a relative URL", "/pricing"],
    ["an http URL that does not start with http://", "http:evil.example"],
    ["a page opened from a file", "file:///home/me/shop.html"],
    ["a blank page", "about:blank"],
  ])("keeps %s out of a page frame, and the page's title in", (_name, url) => {
    expect(parse(JSON.stringify({ type: "page", url, title: "Pricing" }))).toEqual({ ok: true, frame: { type: "page", url: "", title: "Pricing" } });
  });

  it("keeps a web page's URL", () => {
    expect(parse('{"type":"page","url":"https://shop.example/pricing?plan=pro","title":"Pricing"}')).toEqual({ ok: true, frame: { type: "page", url: "https://shop.example/pricing?plan=pro", title: "Pricing" } });
  });

  it("echoes the client id on a refused message so the widget can mark it failed", () => {
    expect(parse('{"type":"message","id":"c9","text":""}')).toMatchObject({ ok: false, id: "c9" });
  });

  it("refuses invalid UTF-8 and binary frames as bad_frame", () => {
    expect(parseClientFrame(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), false)).toMatchObject({ ok: false, code: "bad_frame" });
    expect(parseClientFrame(Buffer.from("{}"), true)).toMatchObject({ ok: false, code: "bad_frame" });
  });

  it("refuses frames over 16 KiB as too_large with close 1009", () => {
    expect(parse(JSON.stringify({ type: "message", id: "c", text: "x".repeat(17_000) }))).toMatchObject({ ok: false, code: "too_large", close: 1009 });
  });
});
