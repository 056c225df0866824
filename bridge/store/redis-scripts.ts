// Lua scripts: each runs atomically on the one node that owns its keys' hash slot.

import { BEFORE_ANY_MESSAGE } from "./message-ids.js";

/**
 * Lua helpers shared by the scripts that store and publish a message in one step.
 * `messageFrameJson` must build what `messageFrame` (message-frame.ts) builds: the store
 * contract test compares the two. `publishToHolders` sends a payload to the channel of
 * every process holding the visitor's sockets but the publisher (see VisitorBus).
 */
const MESSAGE_HELPERS = `
local function messageFrameJson(visitorId, id, from, name, text, ts, clientId)
  local frame = {type = 'message', messageId = id, from = from, name = name, text = text, ts = tonumber(ts)}
  if clientId then frame.id = clientId end
  return cjson.encode({kind = 'visitor-frame', visitorId = visitorId, frame = frame})
end
local function publishToHolders(holdersKey, publisher, channelPrefix, payload)
  for _, processId in ipairs(redis.call('SMEMBERS', holdersKey)) do
    if processId ~= publisher then redis.call('PUBLISH', channelPrefix .. processId, payload) end
  end
end
local function fields(list)
  local out = {}
  for i = 1, #list, 2 do out[list[i]] = list[i + 1] end
  return out
end
-- A hash travels back as one JSON string, not as a RESP array of field/value pairs:
-- decoding ~50 RESP elements per message in ioredis cost more than the rest of the reply.
local function hashJson(list)
  return cjson.encode(fields(list))
end
`;

/**
 * How long a visitor's client ids are remembered after their last message. A widget resends
 * only what was not acknowledged, within minutes; without a bound the ids of every message
 * ever sent stayed in Redis, also after the visitor and their transcripts were gone.
 */
export const CLIENT_IDS_TTL_SECONDS = 86_400;

/**
 * Dedupe by client id, open a chat if the visitor has none, append the message, publish it.
 * The client ids are also bounded by the log's length: beyond it the message they point to
 * is trimmed anyway, so the set starts over.
 */
export const APPEND_VISITOR_MESSAGE = `${MESSAGE_HELPERS}
-- KEYS: 1 visitor hash, 2 client-ids hash, 3 log stream, 4 new chat hash, 5 unrelayed hash (outbox), 6 holders set
-- ARGV: 1 clientId, 2 newChatId, 3 siteId, 4 visitorId, 5 fallback name, 6 text, 7 ts, 8 chat key prefix,
--       9 log max length, 10 owner ('' = none), 11 publisher, 12 process channel prefix
local visitorPairs = redis.call('HGETALL', KEYS[1])
if #visitorPairs == 0 then return {3} end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
-- A resend: say whether the original is still waiting to be relayed (see AppendResult.unrelayed).
if existing then return {1, existing, redis.call('HEXISTS', KEYS[5], existing), '{}', hashJson(visitorPairs)} end
local visitor = fields(visitorPairs)
if visitor.blocked == '1' then return {2} end
local chatId = visitor.chatId
local created = 0
if not chatId then
  chatId = ARGV[2]
  redis.call('HSET', KEYS[4], 'id', chatId, 'siteId', ARGV[3], 'visitorId', ARGV[4], 'state', 'new', 'startedAt', ARGV[7])
  redis.call('HSET', KEYS[1], 'chatId', chatId)
  redis.call('HINCRBY', KEYS[1], 'chatCount', 1)
  redis.call('PERSIST', KEYS[1]) -- kept with their transcripts from now on
  redis.call('PERSIST', KEYS[6]) -- as their holders (see CHANGE_HOLDER)
  visitorPairs = redis.call('HGETALL', KEYS[1])
  created = 1
end
local name = visitor.name
if not name or name == '' then name = ARGV[5] end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'chatId', chatId, 'from', 'visitor', 'name', name, 'text', ARGV[6], 'ts', ARGV[7], 'cid', ARGV[1])
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[9]) then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[2], ${CLIENT_IDS_TTL_SECONDS})
if ARGV[10] ~= '' then redis.call('HSET', KEYS[5], id, ARGV[10]) end
publishToHolders(KEYS[6], ARGV[11], ARGV[12], messageFrameJson(ARGV[4], id, 'visitor', name, ARGV[6], ARGV[7], ARGV[1]))
return {0, id, created, hashJson(redis.call('HGETALL', ARGV[8] .. chatId)), hashJson(visitorPairs), name}
`;

/** Stores and publishes an agent's message if they hold the visitor's active chat (see ChatStore). */
export const APPEND_AGENT_MESSAGE = `${MESSAGE_HELPERS}
-- KEYS: 1 visitor hash, 2 log stream, 3 holders set
-- ARGV: 1 siteId, 2 agent jid, 3 fallback name, 4 text, 5 ts, 6 chat key prefix, 7 log max length,
--       8 publisher, 9 process channel prefix, 10 visitorId
local visitorPairs = redis.call('HGETALL', KEYS[1])
if #visitorPairs == 0 then return {0} end
local visitor = fields(visitorPairs)
if visitor.siteId ~= ARGV[1] then return {0} end
local chatPairs = {}
if visitor.chatId then chatPairs = redis.call('HGETALL', ARGV[6] .. visitor.chatId) end
local chat = fields(chatPairs)
if chat.state ~= 'active' or chat.agentJid ~= ARGV[2] then return {1, hashJson(visitorPairs), hashJson(chatPairs)} end
local name = chat.agentName
if not name or name == '' then name = ARGV[3] end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'chatId', chat.id, 'from', 'agent', 'name', name, 'text', ARGV[4], 'ts', ARGV[5])
publishToHolders(KEYS[3], ARGV[8], ARGV[9], messageFrameJson(ARGV[10], id, 'agent', name, ARGV[4], ARGV[5], nil))
return {2, hashJson(visitorPairs), hashJson(chatPairs), id, name}
`;

/** Stores a new visitor, with the time they are forgotten unless they chat (see VisitorStore.createVisitor): one command per session. */
export const CREATE_VISITOR = `
-- KEYS: 1 visitor hash ; ARGV: 1 forget at (ms, '' = never), then field/value pairs
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return 1
`;

/** Moves the expiry of a visitor who never chatted (see VisitorStore.keepVisitor). */
export const KEEP_VISITOR = `
-- KEYS: 1 visitor hash, 2 holders set ; ARGV: 1 forget at (ms)
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 'chatCount') == 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
  redis.call('PEXPIREAT', KEYS[2], ARGV[1])
end
return 1
`;

/**
 * After a purge: a visitor with no message and no current chat left is forgotten in time
 * (see ChatStore.purgeChat). Their client ids go now: they dedupe resends of messages that
 * are gone, and would outlive the visitor by up to a day (CLIENT_IDS_TTL_SECONDS).
 */
export const FORGET_IF_NOTHING_LEFT = `
-- KEYS: 1 visitor hash, 2 log stream, 3 holders set, 4 client-ids hash ; ARGV: 1 forget at (ms)
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'chatId') == 1 or redis.call('XLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[2], KEYS[4])
redis.call('HDEL', KEYS[1], 'chatCount')
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[3], ARGV[1])
return 1
`;

/**
 * Marks visitors online (see VisitorStore.markOnline). Every visitor who ever opened the
 * widget would stay in the site's sorted set otherwise: expired marks go at each mark, and
 * the set itself expires once the latest mark has (a site nobody visits any more).
 */
export const MARK_ONLINE = `
-- KEYS: 1 the site's online sorted set ; ARGV: 1 now (ms), 2 the latest until (ms), then until/visitorId pairs
redis.call('ZADD', KEYS[1], unpack(ARGV, 3))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local keep = tonumber(ARGV[2]) - tonumber(ARGV[1])
if keep > 0 and redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
`;

/** Publishes a frame to the processes holding a visitor's sockets (see VisitorBus). */
export const PUBLISH_TO_HOLDERS = `${MESSAGE_HELPERS}
-- KEYS: 1 holders set ; ARGV: 1 publisher, 2 process channel prefix, 3 payload
publishToHolders(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
`;

/** Compare-and-set on a chat's state; an ended chat stops being the visitor's current one. Returns the previous state and the chat. */
export const UPDATE_CHAT = `
-- KEYS: 1 chat hash, 2 visitor hash, 3 the visitor's log stream
-- ARGV: 1 allowed states (comma separated), 2 the agent the chat must be with ('' = any),
--       then field/value pairs ('' deletes the field)
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == state then allowed = true end
end
if not allowed then return nil end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'agentJid') ~= ARGV[2] then return nil end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
-- Becoming active: the visitor's messages stored from now on find it active and are relayed
-- by whoever stores them; the assignment relays those up to here (Chat.activatedAfter).
if state ~= 'active' and redis.call('HGET', KEYS[1], 'state') == 'active' then
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
  redis.call('HSET', KEYS[1], 'activatedAfter', last and last[1] or '${BEFORE_ANY_MESSAGE}')
end
if redis.call('HGET', KEYS[1], 'state') == 'ended' and redis.call('HGET', KEYS[2], 'chatId') == redis.call('HGET', KEYS[1], 'id') then
  redis.call('HDEL', KEYS[2], 'chatId')
end
return {state, redis.call('HGETALL', KEYS[1])}
`;

/** Gives the chat to the agent if they are below the cap; idempotent for the same chat. */
export const CLAIM_AGENT = `
-- KEYS: 1 agent's chat set, 2 last-assigned hash, 3 loaded-agents set
-- ARGV: 1 chatId, 2 cap, 3 now, 4 agent jid
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
`;

/**
 * Lua helper: an agent who is no longer one of the site's and holds none of its chats any
 * more leaves the site's routing records (loaded agents, last assignments). Otherwise every
 * agent ever removed, and every deleted site, left them behind for good.
 */
const FORGET_IDLE_FORMER_AGENT = `
-- keys: agents hash, loaded-agents set, last-assigned hash; the agent's chat-set key and jid
local function forgetIdleFormerAgent(agentsKey, loadedKey, lastAssignedKey, chatsKey, jid)
  if redis.call('HEXISTS', agentsKey, jid) == 1 or redis.call('SCARD', chatsKey) > 0 then return end
  redis.call('SREM', loadedKey, jid)
  redis.call('HDEL', lastAssignedKey, jid)
end
`;

/** Removes an agent from a site (see SiteStore.removeAgent); their chats there are moved by the caller. */
export const REMOVE_AGENT = `${FORGET_IDLE_FORMER_AGENT}
-- KEYS: 1 agents hash, 2 loaded-agents set, 3 last-assigned hash ; ARGV: 1 agent jid, 2 the site's agent chat-set key prefix
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
forgetIdleFormerAgent(KEYS[1], KEYS[2], KEYS[3], ARGV[2] .. ARGV[1], ARGV[1])
return removed
`;

/** Frees the agent's slot of a chat (see RoutingStore.releaseAgent). */
export const RELEASE_AGENT = `${FORGET_IDLE_FORMER_AGENT}
-- KEYS: 1 the agent's chat set, 2 agents hash, 3 loaded-agents set, 4 last-assigned hash ; ARGV: 1 chatId, 2 agent jid
redis.call('SREM', KEYS[1], ARGV[1])
forgetIdleFormerAgent(KEYS[2], KEYS[3], KEYS[4], KEYS[1], ARGV[2])
return 1
`;

/**
 * Deletes what a site keeps in its hash slot (see SiteStore.deleteSite). Its chats and
 * their indexes stay: open chats are ended and their agents released by the caller, and
 * transcripts go when retention purges them.
 */
export const DELETE_SITE = `${FORGET_IDLE_FORMER_AGENT}
-- KEYS: 1 site, 2 agents hash, 3 visitor number, 4 online marks, 5 loaded-agents set, 6 last-assigned hash
-- ARGV: 1 the site's agent chat-set key prefix
local removed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('DEL', KEYS[3], KEYS[4])
for _, jid in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  forgetIdleFormerAgent(KEYS[2], KEYS[5], KEYS[6], ARGV[1] .. jid, jid)
end
return removed
`;

/**
 * Takes a site from an agent's sites; an agent left with none is forgotten: their presence,
 * probe round, unavailable-since and busy flag went on forever otherwise, one set per agent
 * ever removed. Added to a site again, they are probed afresh.
 */
export const LEAVE_SITE = `
-- KEYS: 1 the agent's sites set, 2 resources hash, 3 probe round, 4 unavailable since, 5 busy flag ; ARGV: 1 siteId
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) end
return 1
`;

/** Takes due timers and leases them (see TimerStore). */
export const TAKE_DUE_TIMERS = `
-- KEYS: 1 timers sorted set ; ARGV: 1 now, 2 lease ms, 3 limit
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local leased = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], leased, id) end
return due
`;

/** Clears a leased timer, or sets it to fire again, unless someone set it again meanwhile. */
export const FINISH_TIMER = `
-- KEYS: 1 timers sorted set ; ARGV: 1 id, 2 leased-until, 3 retry at ('' = done)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
`;

/** Takes one process whose heartbeat is stale and leases it to the caller (see OutboxStore). */
export const CLAIM_STALE_PROCESS = `
-- KEYS: 1 processes sorted set ; ARGV: 1 stale-before, 2 now
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #stale == 0 then return nil end
redis.call('ZADD', KEYS[1], ARGV[2], stale[1])
return stale[1]
`;

/** Picks the least loaded candidate below the cap and claims the chat for them (see RoutingStore). */
export const CLAIM_LEAST_LOADED = `
-- KEYS: 1 last-assigned hash, 2 loaded-agents set, 3.. each candidate's chat set
-- ARGV: 1 chatId, 2 cap, 3 now, 4.. candidate jids (same order as KEYS 3..)
local best, bestLoad, bestLast = nil, nil, nil
for i = 3, #KEYS do
  local jid = ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then return jid end
  local load = redis.call('SCARD', KEYS[i])
  if load < tonumber(ARGV[2]) then
    local last = tonumber(redis.call('HGET', KEYS[1], jid) or '0')
    if best == nil or load < bestLoad or (load == bestLoad and last < bestLast) then
      best, bestLoad, bestLast = i, load, last
    end
  end
end
if best == nil then return nil end
local jid = ARGV[best + 1]
redis.call('SADD', KEYS[best], ARGV[1])
redis.call('HSET', KEYS[1], jid, ARGV[3])
redis.call('SADD', KEYS[2], jid)
return jid
`;

/** A visitor's hash and their current chat's hash, in one round trip. */
export const VISITOR_WITH_CHAT = `
-- KEYS: 1 visitor hash ; ARGV: 1 chat key prefix
local visitor = redis.call('HGETALL', KEYS[1])
local chatId = redis.call('HGET', KEYS[1], 'chatId')
if not chatId then return {visitor, {}} end
return {visitor, redis.call('HGETALL', ARGV[1] .. chatId)}
`;

/** Removes relayed messages from the outboxes of many visitors (see OutboxStore). */
export const MARK_MANY_RELAYED = `
-- KEYS: the visitors' unrelayed hashes ; ARGV: for each key in order, a count, then that many message ids
local at = 1
for i = 1, #KEYS do
  local count = tonumber(ARGV[at])
  redis.call('HDEL', KEYS[i], unpack(ARGV, at + 1, at + count))
  at = at + count + 1
end
return #KEYS
`;

/**
 * Adds or removes a holder of a visitor's sockets and returns the others (see VisitorBus).
 * A process that dies never releases its visitors; the next hold or release of the visitor
 * prunes it, but a visitor who never comes back kept the set for good: so it lives as long
 * as the visitor does (the same expiry, moved along with theirs: CREATE_VISITOR,
 * KEEP_VISITOR, APPEND_VISITOR_MESSAGE, FORGET_IF_NOTHING_LEFT).
 */
export const CHANGE_HOLDER = `
-- KEYS: 1 holders set, 2 visitor hash ; ARGV: 1 process id, 2 'hold' or 'release'
if ARGV[2] == 'hold' then
  redis.call('SADD', KEYS[1], ARGV[1])
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) elseif ttl == -1 then redis.call('PERSIST', KEYS[1]) end
else
  redis.call('SREM', KEYS[1], ARGV[1])
end
local others = {}
for _, processId in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if processId ~= ARGV[1] then others[#others + 1] = processId end
end
return others
`;

/**
 * Sets or removes one resource of an agent, stamped with the agent's probe round: its
 * value is `show|round`. Returns the resources' values before and after.
 */
export const SET_AGENT_RESOURCE = `
-- KEYS: 1 the agent's resources hash, 2 their probe round. ARGV: 1 resource, 2 show ('' = gone)
local before = redis.call('HVALS', KEYS[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. (redis.call('GET', KEYS[2]) or '0'))
end
return {before, redis.call('HVALS', KEYS[1])}
`;

/**
 * Forgets an agent's resources last heard of in a probe round before ARGV[1] (a value
 * without a round, from an older Parley, counts as round 0). Returns the values before and
 * after.
 */
export const DROP_RESOURCES_UNHEARD_SINCE = `
-- KEYS: 1 the agent's resources hash. ARGV: 1 probe round
local pairs = redis.call('HGETALL', KEYS[1])
local before, after = {}, {}
for i = 1, #pairs, 2 do
  local value = pairs[i + 1]
  local bar = string.find(value, '|', 1, true)
  local round = bar and tonumber(string.sub(value, bar + 1)) or 0
  before[#before + 1] = value
  if round < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], pairs[i]) else after[#after + 1] = value end
end
return {before, after}
`;
