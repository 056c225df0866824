// Text that may go into a stanza (XML 1.0 §2.2 `Char`): tab, line feed and carriage return
// are the only control characters XML allows; NUL and the other C0 controls, U+FFFE/U+FFFF
// and lone surrogates (which cannot be encoded as UTF-8) make ejabberd close the component
// stream as not-well-formed. Used for everything visitors and admins type that Parley
// later puts into XML. Pure.

// eslint-disable-next-line no-control-regex
const FORBIDDEN_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** `isXmlSafe("Hi\n")` → true; `isXmlSafe("Bad\u0001Name")` → false; `isXmlSafe("\uD800")` → false. */
export function isXmlSafe(text: string): boolean {
  return !FORBIDDEN_CHARS.test(text) && text.isWellFormed();
}

/** The message that validation errors give for text that fails `isXmlSafe`. */
export const XML_UNSAFE_MESSAGE = "contains characters that cannot be sent";
