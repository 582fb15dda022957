/* The directory cache: find_user answers (found or not) kept for PG_CACHE_TTL_S seconds,
 * emptied on the users trigger's NOTIFY; shared with deferred callbacks by refcount. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the directory cache ------------------------------------------------------------ */

void pg_cached_unref(struct pg_cached_user *cu)
{
	if (cu && --cu->refs == 0)
		free(cu);
}

static void cache_drop(struct pg_be *be, struct pg_cached_user *cu)
{
	hmap_remove(&be->cache, &cu->node);
	cu->in_cache = false;
	be->n_cached--;
	pg_cached_unref(cu);
}

void pg_cache_flush(struct pg_be *be)
{
	struct hmap_node *n, *tmp;
	size_t i;

	if (!be->cache.buckets)
		return;
	HMAP_FOREACH_SAFE(&be->cache, n, tmp, i)
	{
		cache_drop(be, hmap_entry(n, struct pg_cached_user, node));
	}
}

/* The key of a directory lookup: user bytes, '@', the domain in lower case. */
size_t pg_cache_key(char *dst, const struct sip_str *user, const struct sip_str *domain)
{
	size_t n = 0;

	if (user->len)
		memcpy(dst, user->p, user->len);
	n += user->len;
	dst[n++] = '@';
	for (size_t i = 0; i < domain->len; i++) {
		char ch = domain->p[i];

		dst[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	return n;
}

struct pg_cached_user *pg_cache_find(struct pg_be *be, const char *key, size_t len)
{
	uint64_t h = hmap_hash(key, len);
	time_t now = time(NULL);

	for (struct hmap_node *n = hmap_first(&be->cache, h); n; n = hmap_next(n, h)) {
		struct pg_cached_user *cu = hmap_entry(n, struct pg_cached_user, node);

		if (cu->key_len != len || memcmp(cu->key, key, len) != 0)
			continue;
		if (cu->expires <= now) {
			cache_drop(be, cu);
			return NULL;
		}
		return cu;
	}
	return NULL;
}

/* Decode a binary bytea[] into n sip_strs borrowing from p; returns the count, or -1 when
 * malformed. v may be NULL to count only. */
static long array_decode(const char *p, size_t len, struct sip_str *v, size_t cap)
{
	size_t off = 12, n;
	uint32_t ndim;

	if (len < 12)
		return -1;
	ndim = pg_get_u32(p);
	if (ndim == 0)
		return 0;
	if (ndim != 1 || len < 20)
		return -1;
	n = pg_get_u32(p + 12);
	off = 20;
	for (size_t i = 0; i < n; i++) {
		uint32_t el;

		if (off + 4 > len)
			return -1;
		el = pg_get_u32(p + off);
		off += 4;
		if (el == 0xffffffffu) {
			el = 0; /* a NULL alias reads as empty */
		} else if (el > len - off) {
			return -1;
		}
		if (v && i < cap)
			v[i] = (struct sip_str){.p = p + off, .len = el};
		off += el;
	}
	return (long)n;
}

/* A cache entry for the answer in r (row 0, or not found). NULL on ENOMEM or malformed
 * data. The caller holds the one reference it returns. */
/* A users row (the find_user columns) into u, its strings and up to cap aliases pointing
 * into r: valid while r is. More aliases than cap are left out of the listing. */
void pg_res_user(const PGresult *r, int row, struct dir_user *u, struct sip_str *aliases,
		     size_t cap)
{
	struct sip_str arr = pg_res_str(r, row, 7);
	long n = arr.p ? array_decode(arr.p, arr.len, aliases, cap) : 0;

	*u = (struct dir_user){
	    .username = pg_res_str(r, row, 0),
	    .domain = pg_res_str(r, row, 1),
	    .ha1_md5 = pg_res_str(r, row, 2),
	    .ha1_sha256 = pg_res_str(r, row, 3),
	    .enabled = !PQgetisnull(r, row, 4) && PQgetvalue(r, row, 4)[0] != 0,
	    .auth_off = !PQgetisnull(r, row, 5) && PQgetvalue(r, row, 5)[0] != 0,
	    .max_contacts = (uint32_t)pg_res_i32(r, row, 6, 0),
	    .aliases = aliases,
	    .n_aliases = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap,
	};
}

struct pg_cached_user *pg_cached_new(const PGresult *r, const char *key, size_t key_len)
{
	struct sip_str f[4], arr;
	struct pg_cached_user *cu;
	size_t total = key_len;
	long n_alias = 0;
	char *cur;
	bool found = PQntuples(r) > 0;

	if (found) {
		for (int i = 0; i < 4; i++) {
			f[i] = pg_res_str(r, 0, i);
			total += f[i].len;
		}
		arr = pg_res_str(r, 0, 7);
		n_alias = arr.p ? array_decode(arr.p, arr.len, NULL, 0) : 0;
		if (n_alias < 0)
			return NULL;
		total += arr.len + (size_t)n_alias * sizeof(struct sip_str) + sizeof(void *);
	}
	cu = calloc(1, sizeof(*cu) + total);
	if (!cu)
		return NULL;
	cu->refs = 1;
	cu->found = found;
	cu->expires = time(NULL) + PG_CACHE_TTL_S;
	cur = cu->data;
	if (found) {
		struct sip_str *dst[4] = {&cu->u.username, &cu->u.domain, &cu->u.ha1_md5,
					  &cu->u.ha1_sha256};
		char *araw;

		/* the alias array first: it needs pointer alignment */
		cu->aliases = (struct sip_str *)(void *)cur;
		cur += (size_t)n_alias * sizeof(struct sip_str) + sizeof(void *);
		for (int i = 0; i < 4; i++) {
			if (f[i].len)
				memcpy(cur, f[i].p, f[i].len);
			*dst[i] = (struct sip_str){.p = cur, .len = f[i].len};
			cur += f[i].len;
		}
		araw = cur;
		if (arr.len)
			memcpy(araw, arr.p, arr.len);
		cur += arr.len;
		if (n_alias)
			array_decode(araw, arr.len, cu->aliases, (size_t)n_alias);
		cu->u.aliases = n_alias ? cu->aliases : NULL;
		cu->u.n_aliases = (size_t)n_alias;
		cu->u.enabled = !PQgetisnull(r, 0, 4) && PQgetvalue(r, 0, 4)[0] != 0;
		cu->u.auth_off = !PQgetisnull(r, 0, 5) && PQgetvalue(r, 0, 5)[0] != 0;
		cu->u.max_contacts = (uint32_t)pg_res_i32(r, 0, 6, 0);
	}
	cu->key = cur;
	memcpy(cu->key, key, key_len);
	cu->key_len = key_len;
	return cu;
}

void pg_cache_insert(struct pg_be *be, struct pg_cached_user *cu)
{
	struct pg_cached_user *old = pg_cache_find(be, cu->key, cu->key_len);

	if (old)
		cache_drop(be, old);
	if (be->n_cached >= PG_CACHE_MAX)
		pg_cache_flush(be); /* crude but bounded; entries live seconds anyway */
	cu->refs++;
	cu->in_cache = true;
	hmap_insert(&be->cache, &cu->node, hmap_hash(cu->key, cu->key_len));
	be->n_cached++;
}

