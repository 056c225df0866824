// XML namespaces Parley reads or writes, named after the XEP that defines them.
export const NS = {
  chatStates: "http://jabber.org/protocol/chatstates", // XEP-0085
  receipts: "urn:xmpp:receipts", // XEP-0184
  nick: "http://jabber.org/protocol/nick", // XEP-0172
  discoInfo: "http://jabber.org/protocol/disco#info", // XEP-0030
  discoItems: "http://jabber.org/protocol/disco#items", // XEP-0030
  commands: "http://jabber.org/protocol/commands", // XEP-0050
  version: "jabber:iq:version", // XEP-0092
  ping: "urn:xmpp:ping", // XEP-0199
  roster: "jabber:iq:roster", // RFC 6121
  privilege: "urn:xmpp:privilege:1", // XEP-0356 (ejabberd 23.01)
  privilege2: "urn:xmpp:privilege:2", // XEP-0356 (newer servers)
  forward: "urn:xmpp:forward:0", // XEP-0297
  carbons: "urn:xmpp:carbons:2", // XEP-0280
  stanzaId: "urn:xmpp:sid:0", // XEP-0359
  hints: "urn:xmpp:hints", // XEP-0334
  chatMarkers: "urn:xmpp:chat-markers:0", // XEP-0333
  correction: "urn:xmpp:message-correct:0", // XEP-0308
  xhtmlIm: "http://jabber.org/protocol/xhtml-im", // XEP-0071
  omemo: "eu.siacs.conversations.axolotl", // XEP-0384 (legacy namespace Conversations uses)
  omemo2: "urn:xmpp:omemo:2", // XEP-0384
  openpgp: "urn:xmpp:openpgp:0", // XEP-0373
  legacyPgp: "jabber:x:encrypted", // XEP-0027
  eme: "urn:xmpp:eme:0", // XEP-0380
  stanzas: "urn:ietf:params:xml:ns:xmpp-stanzas", // RFC 6120 §8.3
  delay: "urn:xmpp:delay", // XEP-0203
} as const;
