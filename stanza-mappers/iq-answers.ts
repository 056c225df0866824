import { bareJid, domainOf } from "./addressing.js";

/**
 * Whether an IQ answer comes from the entity the request went to (RFC 6120 §8.1.2.1: the
 * response's `from` is the request's `to`), or from that entity's server answering for it
 * (an error such as service-unavailable). Anyone else — any user can send an IQ result with
 * a guessed id to the component — is not an answer. Pure.
 * - `isAnswerFrom("ann@localhost", "ann@localhost")` → true
 * - `isAnswerFrom("ann@localhost/phone", "ann@localhost/phone")` → true
 * - `isAnswerFrom("ann@localhost", "localhost")` → true (her server)
 * - `isAnswerFrom("ann@localhost", "mallory@localhost/x")` → false
 * - `isAnswerFrom("ann@localhost", undefined)` → false
 */
export function isAnswerFrom(requestTo: string, answerFrom: string | undefined): boolean {
  if (!answerFrom) return false;
  return bareJid(answerFrom) === bareJid(requestTo) || answerFrom.toLowerCase() === domainOf(requestTo);
}
