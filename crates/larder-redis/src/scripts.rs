//! Lua scripts: each runs atomically on the server.
//!
//! Scripts that touch more than one key (a value and its tag sets) run only
//! against a standalone server or a Sentinel primary; on a cluster every
//! script touches one key, and the backend sequences the steps itself.

use fred::types::scripts::Script;

/// Shared Lua helpers: server time, the tag-set key of a tag, the tags a
/// stored value carries, and adding a member to a tag set.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- `svc:v1:rest` -> `svc:v1#t:rest` (prefix and version never hold ':').
local function tag_key(tag)
  return (string.gsub(tag, '^([^:]*:[^:]*):', '%1#t:', 1))
end
-- Tags of a framed value: `\254T<len>:<tag>\n<tag>...<payload>`.
local function frame_tags(v)
  local tags = {}
  if type(v) ~= 'string' or string.sub(v, 1, 2) ~= '\254T' then return tags end
  local colon = string.find(v, ':', 3, true)
  if not colon then return tags end
  local n = tonumber(string.sub(v, 3, colon - 1))
  if not n then return tags end
  for t in string.gmatch(string.sub(v, colon + 1, colon + n), '[^\n]+') do tags[t] = true end
  return tags
end
-- Add `member` (expiring after `ttl` ms, 0 = never) to the tag set, drop
-- members that expired, and make the set live exactly as long as its
-- longest-lived member.
local function tag_add(tkey, member, ttl, now)
  local score = '+inf'
  if ttl > 0 then score = now + ttl end
  redis.call('ZADD', tkey, score, member)
  redis.call('ZREMRANGEBYSCORE', tkey, '-inf', '(' .. now)
  local top = redis.call('ZRANGE', tkey, -1, -1, 'WITHSCORES')
  if top[2] == 'inf' then
    redis.call('PERSIST', tkey)
  else
    redis.call('PEXPIREAT', tkey, top[2])
  end
end
"#;

/// KEYS: value key, tag-set keys. ARGV: framed value, ttl ms (0 = none),
/// mode (`always` / `nx` / `xx`). Returns 1 when written.
const SET_TAGGED: &str = r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local old = redis.pcall('GET', key)
if type(old) == 'table' then old = false end
if ARGV[3] == 'nx' and old then return 0 end
if ARGV[3] == 'xx' and not old then return 0 end
local now = now_ms()
local keep = {}
for i = 2, #KEYS do keep[KEYS[i]] = true end
for t in pairs(frame_tags(old)) do
  local tk = tag_key(t)
  if not keep[tk] then redis.call('ZREM', tk, key) end
end
if ttl > 0 then
  redis.call('SET', key, ARGV[1], 'PX', ttl)
else
  redis.call('SET', key, ARGV[1])
end
for i = 2, #KEYS do tag_add(KEYS[i], key, ttl, now) end
return 1
"#;

/// KEYS: one tag-set key. ARGV: member, ttl ms (0 = none). The cluster form
/// of tagging: one key per script.
const TAG_ADD: &str = r#"
tag_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), now_ms())
return 1
"#;

/// KEYS: value keys. Deletes them and takes them out of their tags.
/// Returns how many existed.
const DELETE: &str = r#"
local n = 0
for _, key in ipairs(KEYS) do
  local v = redis.pcall('GET', key)
  for t in pairs(frame_tags(v)) do redis.call('ZREM', tag_key(t), key) end
  n = n + redis.call('UNLINK', key)
end
return n
"#;

/// KEYS: a tag-set key. ARGV: the tag, batch size. Deletes up to a batch of
/// members that still carry the tag (a member re-set without it is left
/// alone), takes them out of their other tags, and drops the batch from the
/// set. Returns {deleted, members left}.
const INVALIDATE: &str = r#"
local tkey = KEYS[1]
local tag = ARGV[1]
local members = redis.call('ZRANGE', tkey, 0, tonumber(ARGV[2]) - 1)
local n = 0
for _, m in ipairs(members) do
  local v = redis.pcall('GET', m)
  local tags = frame_tags(v)
  if tags[tag] then
    for t in pairs(tags) do
      if t ~= tag then redis.call('ZREM', tag_key(t), m) end
    end
    n = n + redis.call('UNLINK', m)
  end
end
if #members > 0 then redis.call('ZREM', tkey, unpack(members)) end
return {n, redis.call('ZCARD', tkey)}
"#;

/// KEYS: value key. ARGV: ttl ms. Sets the TTL and stretches the key's tag
/// sets to cover it. Returns 1 when the key exists.
const EXPIRE: &str = r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
if redis.call('PEXPIRE', key, ttl) == 0 then return 0 end
local v = redis.pcall('GET', key)
local now = now_ms()
for t in pairs(frame_tags(v)) do tag_add(tag_key(t), key, ttl, now) end
return 1
"#;

/// KEYS: lock key. ARGV: token. Deletes the lock only for its holder.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// The compiled scripts.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) set_tagged: Script,
    pub(crate) tag_add: Script,
    pub(crate) delete: Script,
    pub(crate) invalidate: Script,
    pub(crate) expire: Script,
    pub(crate) unlock: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::from_lua(format!("{PRELUDE}{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            set_tagged: with_prelude(SET_TAGGED),
            tag_add: with_prelude(TAG_ADD),
            delete: with_prelude(DELETE),
            invalidate: with_prelude(INVALIDATE),
            expire: with_prelude(EXPIRE),
            unlock: Script::from_lua(UNLOCK),
        }
    }
}

/// The tag-set key of a namespaced tag: `svc:v1:user:1` -> `svc:v1#t:user:1`.
/// Tag sets and locks live beside the namespace (`svc:v1#…`), so a pattern
/// over `svc:v1:*` never sees them, while an ACL of `~svc:*` still covers
/// them.
pub(crate) fn internal_key(kind: char, key: &str) -> String {
    let mut colons = key.match_indices(':').map(|(i, _)| i);
    match (colons.next(), colons.next()) {
        (Some(_), Some(second)) => format!("{}#{kind}:{}", &key[..second], &key[second + 1..]),
        _ => format!("#{kind}:{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys_sit_beside_the_namespace() {
        assert_eq!(internal_key('t', "svc:v1:user:1"), "svc:v1#t:user:1");
        assert_eq!(
            internal_key('l', "svc:v1:__lock:job"),
            "svc:v1#l:__lock:job"
        );
        assert_eq!(internal_key('t', "odd"), "#t:odd");
    }
}
