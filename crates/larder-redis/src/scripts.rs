//! Lua scripts: each runs atomically on the server.
//!
//! Scripts that touch more than one key (a value, its tag sets and its
//! invalidation stamps) run only against a standalone server or a Sentinel
//! primary. On a cluster every script touches one key, and the backend
//! sequences the steps itself (see `tags.rs`).
//!
//! Keys beside a namespace `svc:v1:`: tag sets `svc:v1#t:<tag>`, locks
//! `svc:v1#l:<lock>`, invalidation stamps `svc:v1#i:<key or tag>` and the
//! namespace's own stamp `svc:v1#i`. Tag sets are scored by the expiry of
//! each member in milliseconds of server time; [`PERSISTENT_SCORE`] stands
//! for "no expiry" (a finite number, so that a cluster's score bumps stay
//! observable).

use fred::types::scripts::Script;

/// The score of a member without expiry: 2^52 ms, some 142,000 years.
pub(crate) const PERSISTENT_SCORE: u64 = 1 << 52;

/// Shared Lua helpers.
const PRELUDE: &str = r#"
local PERSIST = __PERSIST__
local FILL_AGE = __FILL_AGE__
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- `svc:v1:rest` -> `svc:v1#<kind>:rest` (prefix and version never hold ':').
local function internal(kind, name)
  return (string.gsub(name, '^([^:]*:[^:]*):', '%1#' .. kind .. ':', 1))
end
local function tag_key(tag) return internal('t', tag) end
local function stamp_key(name) return internal('i', name) end
local function ns_stamp_key(name)
  local ns = string.match(name, '^([^:]*:[^:]*):')
  return (ns or '') .. '#i'
end
-- Record an invalidation of `name` at `now`, remembered as long as a fill
-- may run.
local function stamp(skey, now)
  redis.call('SET', skey, now, 'PX', FILL_AGE + 1000)
end
-- Tags of a frame (`\254T<len>:<tag>\n<tag>...<payload>`) given whole.
local function value_tags(v)
  local tags = {}
  if type(v) ~= 'string' or string.sub(v, 1, 2) ~= '\254T' then return tags end
  local colon = string.find(v, ':', 3, true)
  if not colon then return tags end
  local n = tonumber(string.sub(v, 3, colon - 1))
  if not n then return tags end
  for t in string.gmatch(string.sub(v, colon + 1, colon + n), '[^\n]+') do tags[t] = true end
  return tags
end
-- Tags of the value stored under `key`, reading its header only.
local function key_tags(key)
  local tags = {}
  local probe = redis.pcall('GETRANGE', key, 0, 23)
  if type(probe) ~= 'string' or string.sub(probe, 1, 2) ~= '\254T' then return tags end
  local colon = string.find(probe, ':', 3, true)
  if not colon then return tags end
  local n = tonumber(string.sub(probe, 3, colon - 1))
  if not n or n == 0 then return tags end
  local header = redis.call('GETRANGE', key, colon, colon + n - 1)
  for t in string.gmatch(header, '[^\n]+') do tags[t] = true end
  return tags
end
-- Drop expired members, and make the set live exactly as long as its
-- longest-lived member (an empty set is gone already).
local function tag_fix(tkey, now)
  redis.call('ZREMRANGEBYSCORE', tkey, '-inf', '(' .. now)
  local top = redis.call('ZRANGE', tkey, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  local score = tonumber(top[2])
  if top[2] == 'inf' or score == nil or score >= PERSIST then
    redis.call('PERSIST', tkey)
  else
    redis.call('PEXPIREAT', tkey, math.floor(score) + 1)
  end
end
local function score_of(ttl, now)
  if ttl > 0 then return now + ttl end
  return PERSIST
end
local function tag_put(tkey, member, score, now)
  redis.call('ZADD', tkey, score, member)
  tag_fix(tkey, now)
end
local function tag_drop(tkey, member, now)
  if redis.call('ZREM', tkey, member) > 0 then tag_fix(tkey, now) end
end
"#;

/// KEYS: value key. ARGV: value (framed when tagged), ttl ms (0 = none),
/// mode (`always` / `nx` / `xx`), fill token (0 = not a fill), tags...
/// Writes the value, moves the key out of the tags it no longer carries and
/// into its new ones (with exact scores), in one step. A fill (token > 0) is
/// refused when the key, one of the tags or the namespace was stamped at or
/// after the token, or the token is older than a fill may be. Returns 1
/// written, 0 declined by the mode, -1 refused.
const WRITE: &str = r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local mode = ARGV[3]
local token = tonumber(ARGV[4])
if token > 0 then
  if now_ms() - token > FILL_AGE then return -1 end
  local function newer(skey)
    local v = redis.call('GET', skey)
    return v and tonumber(v) ~= nil and tonumber(v) >= token
  end
  if newer(stamp_key(key)) or newer(ns_stamp_key(key)) then return -1 end
  for i = 5, #ARGV do
    if newer(stamp_key(ARGV[i])) then return -1 end
  end
end
if mode ~= 'always' then
  local exists = redis.call('EXISTS', key) == 1
  if mode == 'nx' and exists then return 0 end
  if mode == 'xx' and not exists then return 0 end
end
local old = key_tags(key)
if ttl > 0 then
  redis.call('SET', key, ARGV[1], 'PX', ttl)
else
  redis.call('SET', key, ARGV[1])
end
-- An untagged write over an untagged value: nothing more to do.
if #ARGV < 5 and next(old) == nil then return 1 end
local now = now_ms()
local new = {}
for i = 5, #ARGV do new[ARGV[i]] = true end
for t in pairs(old) do
  if not new[t] then tag_drop(tag_key(t), key, now) end
end
local score = score_of(ttl, now)
for t in pairs(new) do tag_put(tag_key(t), key, score, now) end
return 1
"#;

/// KEYS: value keys. Stamps, deletes them and takes them out of their tags.
/// Returns how many existed.
const DELETE: &str = r#"
local n = 0
local now = now_ms()
for _, key in ipairs(KEYS) do
  stamp(stamp_key(key), now)
  local tags = key_tags(key)
  local gone = redis.call('UNLINK', key)
  n = n + gone
  for t in pairs(tags) do tag_drop(tag_key(t), key, now) end
end
return n
"#;

/// KEYS: a tag-set key. ARGV: the tag, batch size. Stamps the tag, deletes
/// up to a batch of members that still carry it (a member re-set without
/// it is left alone), takes them out of their other tags, and drops the
/// batch from the set. Returns {deleted, members left}.
const INVALIDATE: &str = r#"
local tkey = KEYS[1]
local tag = ARGV[1]
local now = now_ms()
stamp(stamp_key(tag), now)
local members = redis.call('ZRANGE', tkey, 0, tonumber(ARGV[2]) - 1)
local n = 0
for _, m in ipairs(members) do
  local tags = key_tags(m)
  if tags[tag] then
    for t in pairs(tags) do
      if t ~= tag then tag_drop(tag_key(t), m, now) end
    end
    n = n + redis.call('UNLINK', m)
  end
end
if #members > 0 then redis.call('ZREM', tkey, unpack(members)) end
local left = redis.call('ZCARD', tkey)
if left > 0 then tag_fix(tkey, now) end
return {n, left}
"#;

/// KEYS: value key. ARGV: ttl ms. Sets the TTL and gives the key's tag
/// sets its new expiry. Returns 1 when the key exists.
const EXPIRE: &str = r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
if redis.call('PEXPIRE', key, ttl) == 0 then return 0 end
local now = now_ms()
for t in pairs(key_tags(key)) do tag_put(tag_key(t), key, now + ttl, now) end
return 1
"#;

/// KEYS: value key. ARGV: ttl ms. The value, with its TTL renewed (tags
/// included); nil when missing.
const GET_TOUCH: &str = r#"
local key = KEYS[1]
local v = redis.call('GET', key)
if not v then return false end
local ttl = tonumber(ARGV[1])
redis.call('PEXPIRE', key, ttl)
local now = now_ms()
for t in pairs(value_tags(v)) do tag_put(tag_key(t), key, now + ttl, now) end
return v
"#;

/// KEYS: value key. The value, deleted (stamped and untagged) in the same
/// step; nil when missing.
const GET_DELETE: &str = r#"
local key = KEYS[1]
local v = redis.call('GET', key)
local now = now_ms()
stamp(stamp_key(key), now)
if not v then return false end
redis.call('UNLINK', key)
for t in pairs(value_tags(v)) do tag_drop(tag_key(t), key, now) end
return v
"#;

/// KEYS: a tag-set key. ARGV: the tag, limit. Up to `limit` members whose
/// value still carries the tag, reading headers only.
const TAG_MEMBERS: &str = r#"
local tkey = KEYS[1]
local tag = ARGV[1]
local limit = tonumber(ARGV[2])
local out = {}
local from = 0
while #out < limit do
  local members = redis.call('ZRANGE', tkey, from, from + 255)
  if #members == 0 then break end
  for _, m in ipairs(members) do
    if key_tags(m)[tag] then
      out[#out + 1] = m
      if #out >= limit then break end
    end
  end
  from = from + 256
end
return out
"#;

// ---- Single-key scripts: safe on every topology. -------------------------

/// KEYS: value key. {value or nil, PTTL}.
const GET_ENTRY: &str = r#"
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"#;

/// KEYS: value key. {value or nil, server time in ms}: the start of a fill.
const BEGIN_FILL: &str = r#"
return {redis.call('GET', KEYS[1]), now_ms()}
"#;

/// KEYS: counter key. ARGV: delta, ttl ms (0 = none). INCRBY, with the TTL
/// set in the same step when the key is created.
const INCR: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if existed == 0 and ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return v
"#;

/// KEYS: lock key. ARGV: token. Deletes the lock only for its holder.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Cluster, value slot. KEYS: value key. ARGV: value, ttl ms, mode, fill
/// token (0 = not a fill). Writes the value; returns {1 written / 0
/// declined / -1 too old a fill, the tags the old value carried...}.
const CLUSTER_WRITE: &str = r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local mode = ARGV[3]
local token = tonumber(ARGV[4])
if token > 0 and now_ms() - token > FILL_AGE then return {-1} end
if mode ~= 'always' then
  local exists = redis.call('EXISTS', key) == 1
  if (mode == 'nx' and exists) or (mode == 'xx' and not exists) then return {0} end
end
local out = {1}
for t in pairs(key_tags(key)) do out[#out + 1] = t end
if ttl > 0 then
  redis.call('SET', key, ARGV[1], 'PX', ttl)
else
  redis.call('SET', key, ARGV[1])
end
return out
"#;

/// Cluster, tag slot. KEYS: tag-set key. ARGV: member, ttl ms (0 = none).
/// Adds the member, or raises its score: a score never goes down and every
/// bump changes it, so a conditional removal that read the old score knows
/// a write came in between. Returns the new score.
const CLUSTER_TAG_BUMP: &str = r#"
local tkey = KEYS[1]
local now = now_ms()
local score = score_of(tonumber(ARGV[2]), now)
local old = tonumber(redis.call('ZSCORE', tkey, ARGV[1]))
if old and old + 1 > score then score = old + 1 end
redis.call('ZADD', tkey, score, ARGV[1])
tag_fix(tkey, now)
return tostring(score)
"#;

/// Cluster, tag slot. KEYS: tag-set key. ARGV: member, the score read
/// before checking that the member's value no longer carries the tag.
/// Removes the member only if no write bumped it since. Returns 1 removed.
const CLUSTER_TAG_DROP_IF: &str = r#"
local tkey = KEYS[1]
local score = redis.call('ZSCORE', tkey, ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', tkey, ARGV[1])
tag_fix(tkey, now_ms())
return 1
"#;

/// Cluster, value slot. KEYS: value key. Deletes it; returns {existed, the
/// tags it carried...}.
const CLUSTER_DELETE: &str = r#"
local tags = key_tags(KEYS[1])
local out = {redis.call('UNLINK', KEYS[1])}
for t in pairs(tags) do out[#out + 1] = t end
return out
"#;

/// Cluster, value slot. KEYS: value key. ARGV: ttl ms. GET and PEXPIRE in
/// one step (the caller stretches the tags).
const CLUSTER_GET_TOUCH: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
"#;

/// Cluster, value slot. KEYS: value key. GET and UNLINK in one step.
const CLUSTER_GET_DELETE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then redis.call('UNLINK', KEYS[1]) end
return v
"#;

/// Cluster, value slot. KEYS: value key. ARGV: value. Deletes the key only
/// while it holds exactly this value (undoing a fill that raced an
/// invalidation).
const CLUSTER_DELETE_IF: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end
return 0
"#;

/// Cluster, stamp slot. KEYS: stamp key. Records an invalidation now.
const CLUSTER_STAMP: &str = r#"
stamp(KEYS[1], now_ms())
return 1
"#;

/// The compiled scripts.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) write: Script,
    pub(crate) delete: Script,
    pub(crate) invalidate: Script,
    pub(crate) expire: Script,
    pub(crate) get_touch: Script,
    pub(crate) get_delete: Script,
    pub(crate) tag_members: Script,
    pub(crate) get_entry: Script,
    pub(crate) begin_fill: Script,
    pub(crate) incr: Script,
    pub(crate) unlock: Script,
    pub(crate) cluster_write: Script,
    pub(crate) cluster_tag_bump: Script,
    pub(crate) cluster_tag_drop_if: Script,
    pub(crate) cluster_delete: Script,
    pub(crate) cluster_get_touch: Script,
    pub(crate) cluster_get_delete: Script,
    pub(crate) cluster_delete_if: Script,
    pub(crate) cluster_stamp: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let prelude = PRELUDE
            .replace(
                "__FILL_AGE__",
                &larder_core::MAX_FILL_AGE.as_millis().to_string(),
            )
            .replace("__PERSIST__", &PERSISTENT_SCORE.to_string());
        let with_prelude = |body: &str| Script::from_lua(format!("{prelude}{body}"));
        Scripts {
            write: with_prelude(WRITE),
            delete: with_prelude(DELETE),
            invalidate: with_prelude(INVALIDATE),
            expire: with_prelude(EXPIRE),
            get_touch: with_prelude(GET_TOUCH),
            get_delete: with_prelude(GET_DELETE),
            tag_members: with_prelude(TAG_MEMBERS),
            get_entry: Script::from_lua(GET_ENTRY),
            begin_fill: with_prelude(BEGIN_FILL),
            incr: Script::from_lua(INCR),
            unlock: Script::from_lua(UNLOCK),
            cluster_write: with_prelude(CLUSTER_WRITE),
            cluster_tag_bump: with_prelude(CLUSTER_TAG_BUMP),
            cluster_tag_drop_if: with_prelude(CLUSTER_TAG_DROP_IF),
            cluster_delete: with_prelude(CLUSTER_DELETE),
            cluster_get_touch: Script::from_lua(CLUSTER_GET_TOUCH),
            cluster_get_delete: Script::from_lua(CLUSTER_GET_DELETE),
            cluster_delete_if: Script::from_lua(CLUSTER_DELETE_IF),
            cluster_stamp: with_prelude(CLUSTER_STAMP),
        }
    }

    /// Every script, to load them all up front.
    pub(crate) fn all(&self) -> [&Script; 19] {
        [
            &self.write,
            &self.delete,
            &self.invalidate,
            &self.expire,
            &self.get_touch,
            &self.get_delete,
            &self.tag_members,
            &self.get_entry,
            &self.begin_fill,
            &self.incr,
            &self.unlock,
            &self.cluster_write,
            &self.cluster_tag_bump,
            &self.cluster_tag_drop_if,
            &self.cluster_delete,
            &self.cluster_get_touch,
            &self.cluster_get_delete,
            &self.cluster_delete_if,
            &self.cluster_stamp,
        ]
    }
}

/// The key beside the namespace for an internal `kind` (`t` tag set, `l`
/// lock, `i` stamp) of a namespaced name: `svc:v1:user:1` ->
/// `svc:v1#t:user:1`. Internal keys live beside the namespace (`svc:v1#…`),
/// so a pattern over `svc:v1:*` never sees them, while an ACL of `~svc:*`
/// still covers them.
pub(crate) fn internal_key(kind: char, key: &str) -> String {
    let mut colons = key.match_indices(':').map(|(i, _)| i);
    match (colons.next(), colons.next()) {
        (Some(_), Some(second)) => format!("{}#{kind}:{}", &key[..second], &key[second + 1..]),
        _ => format!("#{kind}:{key}"),
    }
}

/// The stamp of a whole namespace: `svc:v1:user:1` -> `svc:v1#i`.
pub(crate) fn namespace_stamp_key(key: &str) -> String {
    let mut colons = key.match_indices(':').map(|(i, _)| i);
    match (colons.next(), colons.next()) {
        (Some(_), Some(second)) => format!("{}#i", &key[..second]),
        _ => "#i".to_owned(),
    }
}

/// The tag-set key of a namespaced tag (`svc:v1:t` -> `svc:v1#t:t`), for
/// tools and tests that inspect the index.
pub fn tag_set_key(tag: &str) -> String {
    internal_key('t', tag)
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
        assert_eq!(namespace_stamp_key("svc:v1:user:1"), "svc:v1#i");
        assert_eq!(tag_set_key("svc:v10:t"), "svc:v10#t:t");
    }
}
