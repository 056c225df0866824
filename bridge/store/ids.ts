// Chat ids embed their visitor's id so that every key of one conversation shares the
// visitor's Redis Cluster hash slot (one round trip, atomic scripts), and so that
// `GET /api/chats/{chatId}` can find the chat without a global index.
//
//   chatId("q7m2x4tb3wr5czn6v2aqd7hsek", 1700000000000) → "q7m2x4tb3wr5czn6v2aqd7hsek-lopo8pz4"

export function newChatId(visitorId: string, now: number): string {
  return `${visitorId}-${now.toString(36)}`;
}

export function visitorIdOfChat(chatId: string): string | null {
  const match = /^([a-z2-7]{26})-[0-9a-z]{1,12}$/.exec(chatId);
  return match ? match[1]! : null;
}
