/* The memory backend's configuration: its section has no keys but `backend`, and its
 * directory is the file's top-level users: list, checked here entry by entry. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "memory.h"
#include "sipreg/hmap.h"

struct users_parse {
	struct mem_conf *mc;
	const struct location_conf_env *env;
};

static void lower(char *s)
{
	for (; *s; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static bool domain_served(const struct location_conf_env *env, const char *d)
{
	for (size_t i = 0; i < env->n_domains; i++) {
		if (strcasecmp(env->domains[i], d) == 0)
			return true;
	}
	return false;
}

static bool hex_valid(const char *s, size_t digits)
{
	if (strlen(s) != digits)
		return false;
	for (size_t i = 0; i < digits; i++) {
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

/* A config string shown in a message: control bytes replaced so it stays one line. */
static const char *printable(const char *s, char *buf, size_t size)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < size; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (s[i]) {
		memcpy(buf + i, "...", 4);
		return buf;
	}
	buf[i] = '\0';
	return buf;
}

static void user_release(struct mem_conf_user *u)
{
	free(u->user);
	free(u->domain);
	free(u->password);
	free(u->ha1_md5);
	free(u->ha1_sha256);
	for (size_t i = 0; i < u->n_aliases; i++)
		free(u->aliases[i]);
	free(u->aliases);
	memset(u, 0, sizeof(*u));
}

/* A secret: hex of the right length, lower-cased (digest computes on lower-case hex). */
static int user_ha1(const struct conf_section *item, const char *key, size_t digits,
		    char **sp)
{
	int err = conf_string(item, key, sp);

	if (err || !*sp)
		return err;
	if (!hex_valid(*sp, digits))
		return conf_fail(item, key, CONF_NO_INDEX, "expected %zu hex digits", digits);
	lower(*sp);
	return 0;
}

/* aliases: ["user@domain", ...], each in a served domain; the domain is lower-cased. */
static int user_aliases(const struct conf_section *item, const struct location_conf_env *env,
			struct mem_conf_user *u)
{
	char q[48];
	int err;

	err = conf_strings(item, "aliases", &u->aliases, &u->n_aliases);
	if (err)
		return err;
	for (size_t i = 0; i < u->n_aliases; i++) {
		char *a = u->aliases[i], *at = strchr(a, '@');

		if (!at || at == a || at[1] == '\0' || strchr(at + 1, '@'))
			return conf_fail(item, "aliases", i, "expected \"user@domain\", got \"%s\"",
					 printable(a, q, sizeof(q)));
		lower(at + 1);
		if (!domain_served(env, at + 1))
			return conf_fail(item, "aliases", i, "domain \"%s\" is not one of domains",
					 printable(at + 1, q, sizeof(q)));
	}
	return 0;
}

static int user_parse(const struct conf_section *item, const struct location_conf_env *env,
		      struct mem_conf_user *u)
{
	static const char *const keys[] = {"user",	 "domain",  "password",
					   "ha1_md5",	 "ha1_sha256", "auth",
					   "enabled",	 "max_contacts", "aliases"};
	bool auth_on = true;
	char q[48];
	int err;

	u->enabled = true;
	err = conf_keys(item, keys, sizeof(keys) / sizeof(keys[0]));
	if (err)
		return err;
	if (!conf_has(item, "user"))
		return conf_fail(item, NULL, CONF_NO_INDEX, "missing \"user\"");
	err = conf_string(item, "user", &u->user);
	if (err)
		return err;
	if (strchr(u->user, '@'))
		return conf_fail(item, "user", CONF_NO_INDEX,
				 "the user part only: put the domain in \"domain\"");
	if (conf_has(item, "domain")) {
		err = conf_string(item, "domain", &u->domain);
		if (err)
			return err;
		lower(u->domain);
		if (!domain_served(env, u->domain))
			return conf_fail(item, "domain", CONF_NO_INDEX,
					 "\"%s\" is not one of domains",
					 printable(u->domain, q, sizeof(q)));
	} else if (env->n_domains == 0) {
		return conf_fail(item, NULL, CONF_NO_INDEX,
				 "no domains are configured: users need at least one entry in "
				 "\"domains\"");
	}
	err = conf_string(item, "password", &u->password);
	if (!err)
		err = user_ha1(item, "ha1_md5", 32, &u->ha1_md5);
	if (!err)
		err = user_ha1(item, "ha1_sha256", 64, &u->ha1_sha256);
	if (!err)
		err = conf_bool(item, "auth", &auth_on);
	if (!err)
		err = conf_bool(item, "enabled", &u->enabled);
	if (!err)
		err = conf_uint(item, "max_contacts", 0, UINT32_MAX, &u->max_contacts);
	if (!err)
		err = user_aliases(item, env, u);
	if (err)
		return err;
	u->auth_off = !auth_on;
	if (u->password || u->ha1_md5 || u->ha1_sha256 || u->auth_off ||
	    !env->secret_required(u->domain, env->arg))
		return 0;
	return conf_fail(item, NULL, CONF_NO_INDEX,
			 "user \"%s\" needs password, ha1_md5 or ha1_sha256 (or auth: off)",
			 printable(u->user, q, sizeof(q)));
}

/* Two entries collide when they could answer for the same AOR: same user part (case
 * matters in SIP user parts) and the same domain, or either one in every domain. */
static bool user_clash(const struct mem_conf_user *a, const struct mem_conf_user *b)
{
	if (strcmp(a->user, b->user) != 0)
		return false;
	return !a->domain || !b->domain || strcmp(a->domain, b->domain) == 0;
}

static int user_item(const struct conf_section *item, size_t i, void *arg)
{
	struct users_parse *up = arg;

	/* Counted first so mem_conf_free releases a half-filled entry. */
	up->mc->n_users = i + 1;
	return user_parse(item, up->env, &up->mc->users[i]);
}

/* An entry of the duplicate check: users are hashed by user part, so every entry that
 * could clash with another sits in its chain (a million users check in linear time). */
struct user_seen {
	struct hmap_node node;
	size_t index;
};

static int users_check_duplicates(const struct conf_section *root, const struct mem_conf *mc)
{
	struct user_seen *slots;
	struct hmap seen = {0};
	int err = 0;

	slots = calloc(mc->n_users, sizeof(*slots));
	if (!slots || hmap_init(&seen, mc->n_users) != 0) {
		free(slots);
		return ENOMEM;
	}
	for (size_t i = 0; i < mc->n_users && !err; i++) {
		const struct mem_conf_user *u = &mc->users[i];
		uint64_t h = hmap_hash(u->user, strlen(u->user));
		size_t first = i;

		for (struct hmap_node *n = hmap_first(&seen, h); n; n = hmap_next(n, h)) {
			size_t j = hmap_entry(n, struct user_seen, node)->index;

			if (j < first && user_clash(&mc->users[j], u))
				first = j;
		}
		slots[i].index = i;
		hmap_insert(&seen, &slots[i].node, h);
		if (first != i)
			err = conf_fail(root, "users", i, "duplicate user \"%s%s%s\" (users[%zu])",
					u->user, u->domain ? "@" : "", u->domain ? u->domain : "",
					first);
	}
	hmap_destroy(&seen);
	free(slots);
	return err;
}

int mem_configure(void **confp, const struct conf_section *sec,
		  const struct location_conf_env *env)
{
	static const char *const keys[] = {"backend"};
	struct mem_conf *mc;
	size_t n;
	int err;

	*confp = NULL;
	if (sec) {
		err = conf_keys(sec, keys, 1);
		if (err)
			return err;
	}
	mc = calloc(1, sizeof(*mc));
	if (!mc)
		return ENOMEM;
	n = env->users ? conf_count(env->users, "users") : 0;
	if (n) {
		struct users_parse up = {mc, env};

		mc->users = calloc(n, sizeof(*mc->users));
		if (!mc->users) {
			err = ENOMEM;
			goto fail;
		}
		err = conf_each(env->users, "users", user_item, &up);
		if (!err)
			err = users_check_duplicates(env->users, mc);
		if (err)
			goto fail;
	} else if (env->users) {
		/* Not a list, or an empty one: conf_each reports the former. */
		err = conf_each(env->users, "users", user_item, &(struct users_parse){mc, env});
		if (err)
			goto fail;
	}
	*confp = mc;
	return 0;
fail:
	mem_conf_free(mc);
	return err;
}

void mem_conf_free(void *conf)
{
	struct mem_conf *mc = conf;

	if (!mc)
		return;
	for (size_t i = 0; i < mc->n_users; i++)
		user_release(&mc->users[i]);
	free(mc->users);
	free(mc);
}
