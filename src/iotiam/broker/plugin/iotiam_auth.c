/*
 * iotiam_auth: a Mosquitto 2.0 plugin (plugin API v5) that asks iotiam's decision
 * point whether a client may publish, subscribe or receive, instead of holding the
 * fleet's ACLs itself (the dynamic-security plugin rewrites its whole JSON file after
 * every command: seconds per command at 100k devices).
 *
 * The protocol is docs/broker-plugin.md's: frames of a 4-byte big-endian length and a
 * payload whose first byte says what it is, fields separated by NUL (a byte MQTT
 * forbids in topics and user names, so no field needs escaping).
 *
 *   plugin -> iotiam   'H' "1"                               hello, protocol 1
 *                      'Q' id NUL access NUL user NUL address NUL topic
 *   iotiam -> plugin   'A' id NUL verdict NUL ttl_ms NUL reason   the answer
 *                      'F' user        forget what is cached for this user
 *                      'K' user        forget it and drop its session (revocation)
 *                      '*'             forget everything (a policy change)
 *
 * Mosquitto calls plugins on its one thread, so a question blocks the broker until the
 * answer: answers are cached per (user, access, address, topic) for the ttl iotiam
 * gives, and iotiam's pushes drop entries as soon as something changes. The pushes are
 * read before every cache lookup (a check never sees a stale entry once the push has
 * arrived) and at every broker tick (kicks are done there, never inside a check that
 * may concern the very client being kicked).
 *
 * Fail closed: no connection, a broken frame or no answer within timeout_ms denies
 * (the deny is not cached), and the connection is tried again at most every retry_ms
 * so an iotiam that is down costs one failed connect per interval, not one per check.
 * Losing the connection forgets the whole cache: no push can arrive meanwhile.
 *
 * Options (mosquitto.conf):
 *   plugin_opt_socket      the Unix socket iotiam listens on (required)
 *   plugin_opt_defer_user  a user left to the next plugin (iotiam's dynsec admin)
 *   plugin_opt_timeout_ms  how long a check waits for an answer (default 500)
 *   plugin_opt_retry_ms    the shortest interval between two connects (default 200)
 *   plugin_opt_cache_size  cache slots, rounded up to a power of two (default 65536)
 */

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define PROTOCOL "1"
/* a topic is at most 65,535 bytes; the other fields are short */
#define MAX_FRAME (128 * 1024)
/* longer keys are asked every time rather than held */
#define MAX_CACHED_KEY 1024
#define MAX_PENDING_KICKS 4096

struct entry {
	char *key;          /* access NUL user NUL address NUL topic */
	size_t key_len;
	uint64_t hash;
	uint64_t user_hash;
	int64_t expires_ms;
	bool allow;
};

struct state {
	mosquitto_plugin_id_t *id;
	char *socket_path;
	char *defer_user;
	int timeout_ms;
	int retry_ms;
	int fd;
	int64_t next_connect_ms;
	bool warned;
	uint32_t next_id;
	/* frames read but not yet complete */
	unsigned char *in;
	size_t in_len;
	/* the answer the current check waits for */
	uint32_t waiting_id;
	bool answered;
	bool answer_allow;
	int answer_ttl_ms;
	struct entry *cache;
	size_t cache_mask;
	char *kicks[MAX_PENDING_KICKS];
	int kick_count;
};

static struct state st;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a: cheap, and the cache only needs spread, not secrecy */
static uint64_t hash_bytes(const char *data, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for(size_t i = 0; i < len; i++){
		h ^= (unsigned char)data[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* -- the cache ------------------------------------------------------------------------ */

static void entry_clear(struct entry *e)
{
	free(e->key);
	memset(e, 0, sizeof(*e));
}

static void forget_all(void)
{
	for(size_t i = 0; i <= st.cache_mask; i++){
		if(st.cache[i].key) entry_clear(&st.cache[i]);
	}
}

static void forget_user(const char *user, size_t user_len)
{
	uint64_t h = hash_bytes(user, user_len);
	for(size_t i = 0; i <= st.cache_mask; i++){
		struct entry *e = &st.cache[i];
		if(!e->key || e->user_hash != h) continue;
		/* the user is the key's second field */
		const char *stored = e->key + strlen(e->key) + 1;
		if(strlen(stored) == user_len && memcmp(stored, user, user_len) == 0){
			entry_clear(e);
		}
	}
}

static struct entry *slot_for(uint64_t hash)
{
	return &st.cache[hash & st.cache_mask];
}

static int cached(const char *key, size_t key_len, uint64_t hash)
{
	struct entry *e = slot_for(hash);
	if(!e->key || e->hash != hash || e->key_len != key_len) return -1;
	if(memcmp(e->key, key, key_len) != 0) return -1;
	if(e->expires_ms <= now_ms()){
		entry_clear(e);
		return -1;
	}
	return e->allow ? 1 : 0;
}

static void remember(const char *key, size_t key_len, uint64_t hash, const char *user,
		bool allow, int ttl_ms)
{
	if(ttl_ms <= 0 || key_len > MAX_CACHED_KEY) return;
	struct entry *e = slot_for(hash);
	char *copy = malloc(key_len);
	if(!copy) return;
	memcpy(copy, key, key_len);
	if(e->key) entry_clear(e);
	e->key = copy;
	e->key_len = key_len;
	e->hash = hash;
	e->user_hash = hash_bytes(user, strlen(user));
	e->expires_ms = now_ms() + ttl_ms;
	e->allow = allow;
}

/* -- the connection ------------------------------------------------------------------- */

static void disconnect(const char *why)
{
	if(st.fd >= 0){
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"iotiam_auth: lost iotiam's decision point (%s): denying until it is back", why);
		close(st.fd);
		st.fd = -1;
	}
	/* no push can reach us now: an answer held could already be stale */
	forget_all();
	st.in_len = 0;
	st.next_connect_ms = now_ms() + st.retry_ms;
}

static bool send_frame(const char *payload, size_t len, int64_t deadline)
{
	unsigned char head[4] = {
		(unsigned char)(len >> 24), (unsigned char)(len >> 16),
		(unsigned char)(len >> 8), (unsigned char)len,
	};
	struct iovec_part { const void *data; size_t len; } parts[2] = {
		{head, sizeof(head)}, {payload, len},
	};
	for(int p = 0; p < 2; p++){
		size_t done = 0;
		while(done < parts[p].len){
			ssize_t n = send(st.fd, (const char *)parts[p].data + done, parts[p].len - done,
					MSG_NOSIGNAL);
			if(n > 0){
				done += (size_t)n;
				continue;
			}
			if(n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
			int left = (int)(deadline - now_ms());
			if(left <= 0) return false;
			struct pollfd pfd = {st.fd, POLLOUT, 0};
			if(poll(&pfd, 1, left) <= 0) return false;
		}
	}
	return true;
}

static bool try_connect(void)
{
	if(st.fd >= 0) return true;
	if(now_ms() < st.next_connect_ms) return false;
	st.next_connect_ms = now_ms() + st.retry_ms;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if(fd < 0) return false;
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strncpy(addr.sun_path, st.socket_path, sizeof(addr.sun_path) - 1);
	if(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0){
		if(!st.warned){
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					"iotiam_auth: cannot reach iotiam at %s (%s): denying every check",
					st.socket_path, strerror(errno));
			st.warned = true;
		}
		close(fd);
		return false;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	st.fd = fd;
	st.in_len = 0;
	st.warned = false;
	/* pushes may have been lost while we were apart */
	forget_all();
	if(!send_frame("H" PROTOCOL, 2, now_ms() + st.timeout_ms)){
		disconnect("hello not sent");
		return false;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotiam_auth: connected to iotiam at %s",
			st.socket_path);
	return true;
}

static void queue_kick(const char *user, size_t len)
{
	if(st.kick_count >= MAX_PENDING_KICKS) return;  /* the next tick empties the queue */
	char *copy = malloc(len + 1);
	if(!copy) return;
	memcpy(copy, user, len);
	copy[len] = '\0';
	st.kicks[st.kick_count++] = copy;
}

/* One frame from iotiam; false if it is not one of ours (the link is then dropped). */
static bool handle_frame(const unsigned char *payload, size_t len)
{
	if(len == 0) return false;
	const char *body = (const char *)payload + 1;
	size_t body_len = len - 1;
	switch(payload[0]){
		case '*':
			forget_all();
			return true;
		case 'F':
			forget_user(body, body_len);
			return true;
		case 'K':
			forget_user(body, body_len);
			queue_kick(body, body_len);
			return true;
		case 'A': {
			/* id NUL verdict NUL ttl NUL reason */
			char fields[3][16];
			size_t at = 0;
			for(int f = 0; f < 3; f++){
				size_t n = 0;
				while(at < body_len && body[at] != '\0' && n < sizeof(fields[f]) - 1){
					fields[f][n++] = body[at++];
				}
				fields[f][n] = '\0';
				if(at >= body_len || body[at] != '\0') return false;
				at++;
			}
			if((uint32_t)strtoul(fields[0], NULL, 10) == st.waiting_id){
				st.answered = true;
				st.answer_allow = strcmp(fields[1], "1") == 0;
				st.answer_ttl_ms = atoi(fields[2]);
			}
			return true;  /* an answer to a check that gave up waiting: dropped */
		}
		default:
			return false;
	}
}

/* Read what has arrived (waiting up to timeout_ms for more) and act on whole frames. */
static bool pump(int timeout_ms)
{
	if(st.fd < 0) return false;
	int64_t deadline = now_ms() + timeout_ms;
	for(;;){
		unsigned char chunk[16384];
		ssize_t n = recv(st.fd, chunk, sizeof(chunk), 0);
		if(n == 0){
			disconnect("closed by iotiam");
			return false;
		}
		if(n < 0){
			if(errno == EINTR) continue;
			if(errno != EAGAIN && errno != EWOULDBLOCK){
				disconnect(strerror(errno));
				return false;
			}
			if(timeout_ms <= 0 || st.answered) return true;
			int left = (int)(deadline - now_ms());
			if(left <= 0) return true;
			struct pollfd pfd = {st.fd, POLLIN, 0};
			if(poll(&pfd, 1, left) < 0 && errno != EINTR){
				disconnect(strerror(errno));
				return false;
			}
			continue;
		}
		unsigned char *grown = realloc(st.in, st.in_len + (size_t)n);
		if(!grown){
			disconnect("out of memory");
			return false;
		}
		st.in = grown;
		memcpy(st.in + st.in_len, chunk, (size_t)n);
		st.in_len += (size_t)n;
		size_t at = 0;
		while(st.in_len - at >= 4){
			size_t len = ((size_t)st.in[at] << 24) | ((size_t)st.in[at + 1] << 16)
					| ((size_t)st.in[at + 2] << 8) | st.in[at + 3];
			if(len > MAX_FRAME){
				disconnect("frame too long");
				return false;
			}
			if(st.in_len - at - 4 < len) break;
			if(!handle_frame(st.in + at + 4, len)){
				disconnect("unknown frame");
				return false;
			}
			at += 4 + len;
		}
		memmove(st.in, st.in + at, st.in_len - at);
		st.in_len -= at;
	}
}

/* -- the broker's events -------------------------------------------------------------- */

static const char *access_name(int access)
{
	switch(access){
		case MOSQ_ACL_WRITE: return "publish";
		case MOSQ_ACL_READ: return "receive";
		case MOSQ_ACL_SUBSCRIBE: return "subscribe";
		default: return NULL;
	}
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *user = mosquitto_client_username(ed->client);
	if(st.defer_user && user && strcmp(user, st.defer_user) == 0) return MOSQ_ERR_PLUGIN_DEFER;
	/* leaving a subscription never grants anything */
	if(ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	const char *access = access_name(ed->access);
	if(!user || !access || !ed->topic) return MOSQ_ERR_ACL_DENIED;
	const char *address = mosquitto_client_address(ed->client);
	if(!address) address = "";

	size_t parts[4] = {strlen(access), strlen(user), strlen(address), strlen(ed->topic)};
	size_t key_len = parts[0] + parts[1] + parts[2] + parts[3] + 3;
	if(key_len + 16 > MAX_FRAME) return MOSQ_ERR_ACL_DENIED;
	/* 'Q' id NUL, then the key: room for both */
	char *frame = malloc(key_len + 16);
	if(!frame) return MOSQ_ERR_ACL_DENIED;
	st.next_id++;
	int head = snprintf(frame, 16, "Q%u", st.next_id) + 1;  /* the id's NUL included */
	char *key = frame + head;
	size_t at = 0;
	const char *values[4] = {access, user, address, ed->topic};
	for(int i = 0; i < 4; i++){
		memcpy(key + at, values[i], parts[i]);
		at += parts[i];
		if(i < 3) key[at++] = '\0';
	}
	uint64_t hash = hash_bytes(key, key_len);

	/* pushes first: once iotiam has said "forget", no check uses the old answer */
	if(st.fd >= 0) pump(0);
	int known = cached(key, key_len, hash);
	if(known >= 0){
		free(frame);
		return known ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	int rc = MOSQ_ERR_ACL_DENIED;
	int64_t deadline = now_ms() + st.timeout_ms;
	if(try_connect()){
		st.waiting_id = st.next_id;
		st.answered = false;
		if(!send_frame(frame, (size_t)head + key_len, deadline)){
			disconnect("question not sent");
		}else{
			while(!st.answered && st.fd >= 0){
				int left = (int)(deadline - now_ms());
				if(left <= 0){
					disconnect("no answer in time");
					break;
				}
				pump(left);
			}
			if(st.answered){
				rc = st.answer_allow ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
				remember(key, key_len, hash, user, st.answer_allow, st.answer_ttl_ms);
			}
		}
		st.waiting_id = 0;
	}
	free(frame);
	return rc;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	if(st.fd < 0) try_connect();
	if(st.fd >= 0) pump(0);
	for(int i = 0; i < st.kick_count; i++){
		mosquitto_kick_client_by_username(st.kicks[i], false);
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotiam_auth: dropping any session of %s",
				st.kicks[i]);
		free(st.kicks[i]);
	}
	st.kick_count = 0;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static int positive(const char *value, int fallback)
{
	long v = strtol(value, NULL, 10);
	return v > 0 && v < 1000000000 ? (int)v : fallback;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	memset(&st, 0, sizeof(st));
	st.id = identifier;
	st.fd = -1;
	st.timeout_ms = 500;
	st.retry_ms = 200;
	size_t slots = 65536;
	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "socket")){
			st.socket_path = strdup(options[i].value);
		}else if(!strcmp(options[i].key, "defer_user")){
			st.defer_user = strdup(options[i].value);
		}else if(!strcmp(options[i].key, "timeout_ms")){
			st.timeout_ms = positive(options[i].value, st.timeout_ms);
		}else if(!strcmp(options[i].key, "retry_ms")){
			st.retry_ms = positive(options[i].value, st.retry_ms);
		}else if(!strcmp(options[i].key, "cache_size")){
			slots = (size_t)positive(options[i].value, (int)slots);
		}
	}
	if(!st.socket_path || strlen(st.socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"iotiam_auth: plugin_opt_socket must name iotiam's Unix socket (< 108 bytes)");
		return MOSQ_ERR_INVAL;
	}
	size_t size = 1;
	while(size < slots) size <<= 1;
	st.cache = calloc(size, sizeof(struct entry));
	if(!st.cache) return MOSQ_ERR_NOMEM;
	st.cache_mask = size - 1;
	*userdata = &st;
	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	}
	if(rc != MOSQ_ERR_SUCCESS) return rc;
	try_connect();
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(st.id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(st.id, MOSQ_EVT_TICK, on_tick, NULL);
	if(st.fd >= 0) close(st.fd);
	if(st.cache){
		forget_all();
		free(st.cache);
	}
	for(int i = 0; i < st.kick_count; i++) free(st.kicks[i]);
	free(st.in);
	free(st.socket_path);
	free(st.defer_user);
	memset(&st, 0, sizeof(st));
	st.fd = -1;
	return MOSQ_ERR_SUCCESS;
}
