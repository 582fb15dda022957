/* Digest authentication for REGISTER: challenges, credential parsing, stateless nonces,
 * nonce-count replay detection and brute-force bans. See auth.h and docs/auth.md.
 *
 * DESIGN: a nonce is base64url(ts[8] || salt[8] || HMAC-SHA256(secret, ts || salt ||
 * lower(realm))[16]): any instance holding the same secret verifies it without shared
 * state; ts gives its age (stale after nonce_ttl), salt (a random per-process prefix and a
 * counter) makes every challenge's nonce unique so (nonce, nc) pairs of different clients
 * never collide. Replays and failures are per instance: two fixed-size rings of entries
 * indexed by hmap. A ring slot is reused oldest-first, so memory is bounded whatever the
 * load, and every operation is O(1). Entries are keyed by a 64-bit seeded hash of the key
 * (nonce+nc, IP, username and IP): a collision needs 2^32 live entries to become likely.
 * A user's failures count per source address, so nobody elsewhere can lock the user out;
 * trusted sources (SBCs, proxies, a NAT of many phones) are never counted nor banned. */
#include "registrar/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/digest.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "registrar/nonce.h"
#include "sip/uri.h"
#include "util/fifo_map.h"
#include "util/netaddr.h"
#include "util/text.h"

#define SECRET_MIN 16
#define SECRET_MAX 4096
#define REALM_MAX  256
/* Longest unescaped quoted value hashed (username, realm, uri, nonce, cnonce). */
#define QVAL_MAX 1024

/* (nonce, nc) pairs remembered per instance: 40 bytes each, so 1M entries = 40 MiB of
 * address space, touched only as used. At 17500 authenticated REGISTERs/s this covers
 * the last minute; see docs/auth.md. */
#define NC_CAP (1u << 20)
/* Failure counters per table (IPs, usernames). */
#define BAN_CAP (1u << 16)

#define UA_MAX	  2048 /* User-Agent bytes a rule looks at */

/* An auth.user_agents rule, its match lower-cased for the search. */
struct ua_rule {
	char *match;
	size_t len;
	struct auth_offer offer;
};

/* A used (nonce, nc) pair, kept for the nonce's remaining life. */
struct nc_entry {
	struct fifo_entry head;
	int64_t expires;
	int64_t issued; /* the nonce's timestamp */
};

struct nc_table {
	struct fifo_map map;
	/* Newest nonce timestamp among entries evicted before they expired: a nonce issued
	 * at or before it may have lost its record, so its use cannot be proven fresh. */
	int64_t horizon;
	int64_t now; /* of the add in progress, for the eviction callbacks */
};

/* Failures of one source (or user at a source) within the window, and its ban. */
struct ban_entry {
	struct fifo_entry head;
	int64_t window_start;
	int64_t banned_until;
	uint32_t failures;
};

struct auth {
	uint8_t *secret; /* only until mac is keyed */
	size_t secret_len;
	struct digest_hmac *mac;
	bool enabled;
	uint32_t nonce_ttl;
	char **off_domains;
	size_t n_off_domains;
	uint32_t ban_max, ban_window, ban_time;
	enum ban_action ban_action;
	const struct netaddr_set *trusted; /* borrowed */
	struct auth_offer offer;	   /* everyone no rule matches */
	struct ua_rule *rules;
	size_t n_rules;
	struct nonce_key nonce; /* its mac is this struct's */
	struct nc_table nc;
	struct fifo_map ban_ip, ban_user;
	int64_t ban_now; /* of the add in progress, for ban_dead */
	struct log_limit lim_ban_ip, lim_ban_user; /* bans start at attack rate */
};

/* ---- small helpers ---------------------------------------------------------------- */

static bool str_ieq(const struct sip_str *a, const char *b, size_t blen)
{
	return a->len == blen && (blen == 0 || strncasecmp(a->p, b, blen) == 0);
}

/* ---- setup ------------------------------------------------------------------------ */

static int auth_secret_load(struct auth *a, const char *path)
{
	uint8_t buf[SECRET_MAX + 1];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = errno;
		log_err("auth: cannot open secret_file %s: %s", path, strerror(err));
		return err;
	}
	if (fstat(fd, &st) != 0) {
		err = errno;
		log_err("auth: cannot stat secret_file %s: %s", path, strerror(err));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("auth: secret_file %s is not a regular file", path);
		err = EINVAL;
		goto out;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		log_err("auth: secret_file %s is accessible by every user (mode %03o): "
			"chmod 600 or 640 it; anyone who reads it can forge nonces",
			path, (unsigned)(st.st_mode & 0777));
		err = EACCES;
		goto out;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			log_err("auth: cannot read secret_file %s: %s", path, strerror(err));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* `openssl rand -hex 32 > file` ends with a newline an editor may or may not keep:
	 * trailing whitespace is not part of the secret. */
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
			   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len > SECRET_MAX) {
		log_err("auth: secret_file %s is longer than %d bytes", path, SECRET_MAX);
		err = EINVAL;
		goto out;
	}
	if (len < SECRET_MIN) {
		log_err("auth: secret_file %s holds %zu bytes; at least %d are needed "
			"(e.g. openssl rand -hex 32)",
			path, len, SECRET_MIN);
		err = EINVAL;
		goto out;
	}
	a->secret = malloc(len);
	if (!a->secret) {
		err = ENOMEM;
		goto out;
	}
	memcpy(a->secret, buf, len);
	a->secret_len = len;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return err;
}

static int random_fill(void *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom((char *)p + got, len - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		got += (size_t)n;
	}
	return 0;
}

/* An offer from config values (enum digest_alg numbers), checked. */
static int offer_set(struct auth_offer *o, const int *algs, size_t n)
{
	o->n = 0;
	if (n == 0 || n > 2)
		return EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (algs[i] != DIGEST_MD5 && algs[i] != DIGEST_SHA256) {
			log_err("auth: unknown algorithm number %d", algs[i]);
			return EINVAL;
		}
		o->alg[o->n++] = (enum digest_alg)algs[i];
	}
	return 0;
}

int auth_alloc(struct auth **ap, const struct auth_conf *conf,
	       const struct netaddr_set *trusted)
{
	struct auth *a;
	int err;

	*ap = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return ENOMEM;
	a->enabled = conf->enabled;
	a->nonce_ttl = conf->nonce_ttl ? conf->nonce_ttl : 300;
	a->ban_max = conf->ban.max_failures;
	a->ban_window = conf->ban.window ? conf->ban.window : 60;
	a->ban_time = conf->ban.ban_time ? conf->ban.ban_time : 300;
	a->ban_action = conf->ban.action;
	a->trusted = trusted;
	if (conf->n_algorithms == 0) {
		a->offer.alg[0] = DIGEST_MD5;
		a->offer.n = 1;
	} else {
		err = offer_set(&a->offer, conf->algorithms, conf->n_algorithms);
		if (err)
			goto fail;
	}
	if (conf->n_user_agents) {
		a->rules = calloc(conf->n_user_agents, sizeof(*a->rules));
		if (!a->rules) {
			err = ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < conf->n_user_agents; i++) {
			const struct auth_ua_rule *cr = &conf->user_agents[i];
			struct ua_rule *ur = &a->rules[i];

			a->n_rules++;
			err = offer_set(&ur->offer, cr->algorithms, cr->n_algorithms);
			if (err)
				goto fail;
			ur->match = strdup(cr->match ? cr->match : "");
			if (!ur->match) {
				err = ENOMEM;
				goto fail;
			}
			ur->len = strlen(ur->match);
			for (size_t j = 0; j < ur->len; j++)
				ur->match[j] = (char)tolower((unsigned char)ur->match[j]);
		}
	}
	if (conf->n_off_domains) {
		a->off_domains = calloc(conf->n_off_domains, sizeof(*a->off_domains));
		if (!a->off_domains) {
			err = ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < conf->n_off_domains; i++) {
			a->off_domains[i] = strdup(conf->off_domains[i]);
			if (!a->off_domains[i]) {
				err = ENOMEM;
				goto fail;
			}
			a->n_off_domains++;
		}
	}

	if (conf->secret_file) {
		err = auth_secret_load(a, conf->secret_file);
		if (err)
			goto fail;
	} else {
		a->secret = malloc(32);
		if (!a->secret) {
			err = ENOMEM;
			goto fail;
		}
		a->secret_len = 32;
		err = random_fill(a->secret, a->secret_len);
		if (err) {
			log_err("auth: no random bytes for the nonce secret: %s",
				strerror(err));
			goto fail;
		}
		if (a->enabled)
			log_info(
			    "auth: no auth.secret_file: nonces verify on this process only; "
			    "instances of a cluster must share one secret_file");
	}
	err = digest_hmac_alloc(&a->mac, a->secret, a->secret_len);
	if (err) {
		log_err("auth: cannot key HMAC-SHA256: %s", strerror(err));
		goto fail;
	}
	a->nonce.mac = a->mac;
	OPENSSL_cleanse(a->secret, a->secret_len);
	free(a->secret);
	a->secret = NULL;
	err = random_fill(&a->nonce.salt_prefix, sizeof(a->nonce.salt_prefix));
	if (!err)
		err = random_fill(&a->nonce.salt_counter, sizeof(a->nonce.salt_counter));
	if (err)
		goto fail;
	err = fifo_map_init(&a->nc.map, NC_CAP, sizeof(struct nc_entry), 1024);
	if (!err)
		err = fifo_map_init(&a->ban_ip, BAN_CAP, sizeof(struct ban_entry), 256);
	if (!err)
		err = fifo_map_init(&a->ban_user, BAN_CAP, sizeof(struct ban_entry), 256);
	if (err)
		goto fail;
	*ap = a;
	return 0;
fail:
	auth_free(&a);
	return err;
}

void auth_free(struct auth **ap)
{
	struct auth *a = *ap;

	if (!a)
		return;
	if (a->secret) {
		OPENSSL_cleanse(a->secret, a->secret_len);
		free(a->secret);
	}
	digest_hmac_free(&a->mac);
	for (size_t i = 0; i < a->n_off_domains; i++)
		free(a->off_domains[i]);
	free(a->off_domains);
	for (size_t i = 0; i < a->n_rules; i++)
		free(a->rules[i].match);
	free(a->rules);
	fifo_map_destroy(&a->nc.map);
	fifo_map_destroy(&a->ban_ip);
	fifo_map_destroy(&a->ban_user);
	free(a);
	*ap = NULL;
}

int auth_tag_key_alloc(struct auth *a, struct sipresp_tag_key **kp)
{
	/* A nonce MAC's input starts with a big-endian timestamp, a NUL byte for centuries
	 * to come: it never equals this label, so the two uses of the secret stay apart. */
	static const char label[] = "sipreg To-tag key v1";
	struct sip_str part = {.p = label, .len = sizeof(label) - 1};
	uint8_t key[DIGEST_HMAC_LEN];
	int err;

	*kp = NULL;
	err = digest_hmac_run(a->mac, &part, 1, key);
	if (!err)
		err = sipresp_tag_key_alloc(kp, key, sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	return err;
}

bool auth_required(const struct auth *a, const struct sip_str *domain)
{
	if (!a->enabled)
		return false;
	for (size_t i = 0; i < a->n_off_domains; i++)
		if (str_ieq(domain, a->off_domains[i], strlen(a->off_domains[i])))
			return false;
	return true;
}

enum auth_nonce_state auth_nonce_check(const struct auth *a, const struct auth_creds *c,
				       int64_t now)
{
	return nonce_check(&a->nonce, &c->nonce, &c->realm, now, a->nonce_ttl);
}

/* Does hay contain needle (lower case), comparing hay case-insensitively? */
static bool ci_contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	if (nlen == 0 || nlen > hlen)
		return nlen == 0;
	for (size_t i = 0; i + nlen <= hlen; i++) {
		size_t j = 0;

		while (j < nlen && tolower((unsigned char)hay[i + j]) == needle[j])
			j++;
		if (j == nlen)
			return true;
	}
	return false;
}

/* Has u a secret that answers alg? The same test auth_response_ok() makes. */
static bool user_can(const struct dir_user *u, enum digest_alg alg)
{
	const struct sip_str *stored = alg == DIGEST_SHA256 ? &u->ha1_sha256 : &u->ha1_md5;

	if (u->password.len)
		return true;
	return stored->len == digest_hex_len((enum digest_alg)alg) && auth_all_hex(stored);
}

void auth_offer_for(const struct auth *a, const struct sip_str *user_agent,
		    const struct dir_user *u, struct auth_offer *o)
{
	struct auth_offer kept = {.n = 0};
	size_t n = 0;

	*o = a->offer;
	if (a->n_rules && user_agent && user_agent->len) {
		size_t len = user_agent->len < UA_MAX ? user_agent->len : UA_MAX;

		for (size_t i = 0; i < a->n_rules; i++) {
			if (ci_contains(user_agent->p, len, a->rules[i].match,
					a->rules[i].len)) {
				*o = a->rules[i].offer;
				break;
			}
		}
	}
	if (!u)
		return;
	for (size_t i = 0; i < o->n; i++) {
		if (user_can(u, o->alg[i]))
			kept.alg[n++] = o->alg[i];
	}
	/* Nothing offered would do: offer what the user can answer. */
	if (n == 0 && user_can(u, DIGEST_SHA256))
		kept.alg[n++] = DIGEST_SHA256;
	if (n == 0 && user_can(u, DIGEST_MD5))
		kept.alg[n++] = DIGEST_MD5;
	/* No secret at all: whatever the answer, it fails; the offer stays as it was. */
	if (n) {
		kept.n = n;
		*o = kept;
	}
}

void auth_challenge(struct auth *a, struct sipresp *r, const struct sip_str *realm,
		    const struct auth_offer *offer, bool stale, int64_t now)
{
	char nonce[NONCE_B64_LEN + 1];
	char qrealm[2 * REALM_MAX + 1];
	size_t q = 0;
	int err;

	if (realm->len > REALM_MAX) {
		if (!r->err)
			r->err = EINVAL;
		return;
	}
	for (size_t i = 0; i < realm->len; i++) {
		if (realm->p[i] == '"' || realm->p[i] == '\\')
			qrealm[q++] = '\\';
		qrealm[q++] = realm->p[i];
	}
	qrealm[q] = '\0';
	err = nonce_make(&a->nonce, realm, now, nonce);
	if (err) {
		log_err("auth: cannot make a nonce: %s", strerror(err));
		if (!r->err)
			r->err = err;
		return;
	}
	/* appended piece by piece: printf would cost more than the nonce's HMAC */
	for (size_t i = 0; i < offer->n && i < 2; i++) {
		const char *alg = digest_alg_name((enum digest_alg)offer->alg[i]);

		sipresp_append_lit(r, "WWW-Authenticate: Digest realm=\"");
		sipresp_append(r, qrealm, q);
		sipresp_append_lit(r, "\", nonce=\"");
		sipresp_append(r, nonce, NONCE_B64_LEN);
		sipresp_append_lit(r, "\", qop=\"auth\", algorithm=");
		sipresp_append(r, alg, strlen(alg));
		if (stale)
			sipresp_append_lit(r, ", stale=true");
		sipresp_append_lit(r, "\r\n");
	}
}

/* ---- verification ----------------------------------------------------------------- */

static bool auth_response_check(const struct auth_creds *c, const struct dir_user *u,
				const struct sip_str *method)
{
	enum digest_alg alg = (enum digest_alg)c->alg;
	size_t hexlen = digest_hex_len(alg);
	const struct sip_str *stored = alg == DIGEST_SHA256 ? &u->ha1_sha256 : &u->ha1_md5;
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1], want[DIGEST_HEX_MAX + 1];
	char bu[QVAL_MAX], br[QVAL_MAX], bn[QVAL_MAX], bc[QVAL_MAX], bi[QVAL_MAX];
	struct sip_str user, realm, nonce, cnonce, uri, h1, h2;
	bool ok = false;
	int err;

	if (!auth_unquote(&c->username, bu, sizeof(bu), &user) ||
	    !auth_unquote(&c->realm, br, sizeof(br), &realm) ||
	    !auth_unquote(&c->nonce, bn, sizeof(bn), &nonce) ||
	    !auth_unquote(&c->cnonce, bc, sizeof(bc), &cnonce) ||
	    !auth_unquote(&c->uri, bi, sizeof(bi), &uri))
		return false;
	if (stored->len == hexlen && auth_all_hex(stored)) {
		for (size_t i = 0; i < hexlen; i++)
			ha1[i] = (char)tolower((unsigned char)stored->p[i]);
		ha1[hexlen] = '\0';
	} else if (u->password.len) {
		if (digest_ha1(alg, &user, &realm, &u->password, ha1) != 0)
			goto out;
	} else {
		goto out; /* no secret for this algorithm */
	}
	h1 = (struct sip_str){.p = ha1, .len = hexlen};
	err = digest_ha2(alg, method, &uri, ha2);
	h2 = (struct sip_str){.p = ha2, .len = hexlen};
	if (!err)
		err = digest_response(alg, &h1, &nonce, &c->nc, &cnonce,
				      c->has_qop ? &c->qop : NULL, &h2, want);
	if (!err)
		ok = digest_hex_equal(want, hexlen, &c->response);
out:
	OPENSSL_cleanse(ha1, sizeof(ha1));
	return ok;
}

bool auth_response_ok(const struct auth_creds *c, const struct dir_user *u,
		      const struct sip_str *method)
{
	/* Stands in for a user who does not exist; its result is never used. */
	static const struct dir_user nobody = {.password = {.p = "-", .len = 1}};

	if (!u) {
		(void)auth_response_check(c, &nobody, method);
		return false;
	}
	return auth_response_check(c, u, method);
}

/* ---- nonce-count replay ----------------------------------------------------------- */

static bool nc_dead(const struct fifo_entry *fe, void *arg)
{
	const struct nc_table *t = arg;

	return ((const struct nc_entry *)fe)->expires <= t->now;
}

/* A record pushed out alive moves the horizon: its pair could be replayed unseen. */
static void nc_evict(const struct fifo_entry *fe, void *arg)
{
	const struct nc_entry *e = (const struct nc_entry *)fe;
	struct nc_table *t = arg;

	if (e->expires > t->now && e->issued > t->horizon)
		t->horizon = e->issued;
}

bool auth_nc_replayed(struct auth *a, const struct auth_creds *c, int64_t now)
{
	struct nc_table *t = &a->nc;
	uint8_t ncb[4] = {(uint8_t)(c->nc_value >> 24), (uint8_t)(c->nc_value >> 16),
			  (uint8_t)(c->nc_value >> 8), (uint8_t)c->nc_value};
	uint64_t h = hmap_hash_more(hmap_hash(c->nonce.p, c->nonce.len), ncb, sizeof(ncb));
	struct nc_entry *e;
	int64_t issued;

	/* A record the ring under pressure had to drop would let that pair be replayed; so
	 * a nonce as old as the dropped records is treated as used (the client gets a fresh
	 * challenge) rather than trusted. */
	if (nonce_issued(&c->nonce, &issued) != 0 || issued <= t->horizon)
		return true;
	for (struct fifo_entry *fe = fifo_map_first(&t->map, h); fe; fe = fifo_map_next(fe, h)) {
		if (((struct nc_entry *)fe)->expires > now)
			return true;
	}
	t->now = now;
	e = (struct nc_entry *)fifo_map_add(&t->map, h, nc_dead, nc_evict, t);
	/* Kept for the nonce's whole remaining life: now + ttl covers ts + ttl. */
	e->expires = now + (int64_t)a->nonce_ttl + NONCE_MAX_SKEW;
	e->issued = issued;
	return false;
}

/* ---- authorization ---------------------------------------------------------------- */

/* Does "user@domain" (or a bare "user") name username at domain? An empty want_domain
 * (a user valid in every configured domain) matches any domain. */
static bool aor_is(const struct sip_str *aor_user, const struct sip_str *aor_domain,
		   const struct sip_str *user, const struct sip_str *want_domain)
{
	if (!sip_str_eq(aor_user, user))
		return false;
	return want_domain->len == 0 || str_ieq(aor_domain, want_domain->p, want_domain->len);
}

static void aor_split(const struct sip_str *aor, struct sip_str *user, struct sip_str *domain)
{
	const char *at = NULL;

	for (size_t i = aor->len; i > 0; i--) {
		if (aor->p[i - 1] == '@') {
			at = aor->p + i - 1;
			break;
		}
	}
	if (!at) {
		*user = *aor;
		*domain = SIP_STR_NULL;
		return;
	}
	*user = (struct sip_str){.p = aor->p, .len = (size_t)(at - aor->p)};
	*domain = (struct sip_str){.p = at + 1, .len = aor->len - user->len - 1};
}

bool auth_may_register(const struct dir_user *u, const struct sip_str *aor)
{
	struct sip_str au, ad, lu, ld;

	aor_split(aor, &au, &ad);
	if (au.len == 0 || ad.len == 0)
		return false;
	if (aor_is(&au, &ad, &u->username, &u->domain))
		return true;
	for (size_t i = 0; i < u->n_aliases; i++) {
		aor_split(&u->aliases[i], &lu, &ld);
		if (ld.len == 0)
			ld = u->domain; /* a bare alias lives in the user's domain */
		if (lu.len && aor_is(&au, &ad, &lu, &ld))
			return true;
	}
	return false;
}

/* ---- bans ------------------------------------------------------------------------- */

static struct ban_entry *ban_find(struct fifo_map *t, uint64_t h)
{
	return (struct ban_entry *)fifo_map_first(t, h);
}

static bool ban_dead(const struct fifo_entry *fe, void *arg)
{
	const struct ban_entry *e = (const struct ban_entry *)fe;
	const struct auth *a = arg;

	return e->banned_until <= a->ban_now && a->ban_now - e->window_start >= (int64_t)a->ban_window;
}

static bool ban_active(struct fifo_map *t, uint64_t h, int64_t now)
{
	struct ban_entry *e = ban_find(t, h);

	return e && e->banned_until > now;
}

/* The key of (username, ip) in the user table: the hash of the address goes on with the
 * name, so "alice" from two addresses are two entries. */
static uint64_t ban_user_key(const char *ip, const struct sip_str *username)
{
	const char *addr = ip ? ip : "";

	return hmap_hash_more(hmap_hash(addr, strlen(addr)), username->p, username->len);
}

bool auth_banned(struct auth *a, const char *ip, const struct sip_str *username, int64_t now)
{
	if (a->ban_max == 0 || netaddr_set_contains_str(a->trusted, ip))
		return false;
	if (ip && *ip && ban_active(&a->ban_ip, hmap_hash(ip, strlen(ip)), now))
		return true;
	return username && username->len &&
	       ban_active(&a->ban_user, ban_user_key(ip, username), now);
}

/* Count one failure for key; true when it started a ban. */
static bool ban_count(struct auth *a, struct fifo_map *t, uint64_t h, int64_t now)
{
	struct ban_entry *e = ban_find(t, h);

	if (!e) {
		/* When full, the oldest goes even if alive: memory stays bounded. */
		a->ban_now = now;
		e = (struct ban_entry *)fifo_map_add(t, h, ban_dead, NULL, a);
		e->window_start = now;
	}
	if (e->banned_until > now)
		return false; /* already banned: the ban is not extended by more tries */
	if (now - e->window_start >= (int64_t)a->ban_window) {
		e->window_start = now;
		e->failures = 0;
	}
	if (++e->failures < a->ban_max)
		return false;
	e->banned_until = now + (int64_t)a->ban_time;
	e->failures = 0;
	e->window_start = now;
	return true;
}

void auth_failure(struct auth *a, const char *ip, const struct sip_str *username, int64_t now)
{
	char buf[LOG_ESC_SIZE];

	if (a->ban_max == 0 || netaddr_set_contains_str(a->trusted, ip))
		return;
	if (ip && *ip && ban_count(a, &a->ban_ip, hmap_hash(ip, strlen(ip)), now))
		log_limited(&a->lim_ban_ip, LOG_WARN,
			    "auth: %u failures from %s within %us: banned for %us", a->ban_max,
			    ip, a->ban_window, a->ban_time);
	if (username && username->len &&
	    ban_count(a, &a->ban_user, ban_user_key(ip, username), now))
		log_limited(&a->lim_ban_user, LOG_WARN,
			    "auth: %u failures for user \"%s\" from %s within %us: "
			    "banned there for %us",
			    a->ban_max,
			    log_escape(username->p, username->len, buf, sizeof(buf)),
			    ip && *ip ? ip : "?", a->ban_window, a->ban_time);
}

enum ban_action auth_ban_action(const struct auth *a)
{
	return a->ban_action;
}
