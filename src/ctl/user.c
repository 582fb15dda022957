/* sipregctl user add|del|passwd|list: provisioning through the backend interface, so a
 * directory in PostgreSQL, LDAP or any later backend is written by the same code. Only
 * HA1s are handed to the backend, never a clear password. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ops/show.h"
#include "util/digest.h"

#define CTL_MAX_ALIASES 64

struct user_opts {
	const char *password;
	const char *ha1_md5, *ha1_sha256;
	bool auth_off, disabled;
	long max_contacts;
	const char *aliases[CTL_MAX_ALIASES];
	size_t n_aliases;
};

static bool is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

static void opts_parse(int argc, char **argv, struct user_opts *o, bool add)
{
	static const struct option longopts[] = {
	    {"password", required_argument, NULL, 'p'},
	    {"ha1-md5", required_argument, NULL, 'm'},
	    {"ha1-sha256", required_argument, NULL, 's'},
	    {"auth-off", no_argument, NULL, 'o'},
	    {"max-contacts", required_argument, NULL, 'n'},
	    {"alias", required_argument, NULL, 'a'},
	    {"disabled", no_argument, NULL, 'x'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;

		switch (ch) {
		case 'p':
			o->password = optarg;
			break;
		case 'm':
			o->ha1_md5 = optarg;
			break;
		case 's':
			o->ha1_sha256 = optarg;
			break;
		case 'o':
		case 'x':
		case 'n':
		case 'a':
			if (!add)
				ctl_die(CTL_EXIT_USAGE, "user passwd takes only --password or "
							"--ha1-md5/--ha1-sha256");
			if (ch == 'o') {
				o->auth_off = true;
			} else if (ch == 'x') {
				o->disabled = true;
			} else if (ch == 'n') {
				errno = 0;
				o->max_contacts = strtol(optarg, &end, 10);
				if (errno || *end || o->max_contacts < 0 ||
				    o->max_contacts > 1000000)
					ctl_die(CTL_EXIT_USAGE,
						"--max-contacts wants a number from 0 to 1000000");
			} else {
				if (o->n_aliases == CTL_MAX_ALIASES)
					ctl_die(CTL_EXIT_USAGE, "at most %d aliases",
						CTL_MAX_ALIASES);
				o->aliases[o->n_aliases++] = optarg;
			}
			break;
		default:
			ctl_die(CTL_EXIT_USAGE, "bad option (see sipregctl --help)");
		}
	}
	if (optind != argc)
		ctl_die(CTL_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	if (o->password && (o->ha1_md5 || o->ha1_sha256))
		ctl_die(CTL_EXIT_USAGE, "give --password or HA1s, not both");
	if ((o->ha1_md5 != NULL) != (o->ha1_sha256 != NULL))
		ctl_die(CTL_EXIT_USAGE, "give both --ha1-md5 and --ha1-sha256 (phones use either)");
	if (o->ha1_md5 && (!is_hex(o->ha1_md5, 32) || !is_hex(o->ha1_sha256, 64)))
		ctl_die(CTL_EXIT_USAGE, "--ha1-md5 wants 32 hex digits, --ha1-sha256 64");
	if (!add && !o->password && !o->ha1_md5)
		ctl_die(CTL_EXIT_USAGE, "user passwd needs --password or --ha1-md5 and --ha1-sha256");
}

/* The password from the first line of stdin, for --password - (kept out of `ps`). */
static const char *password_stdin(void)
{
	static char line[1024];
	size_t n;

	if (!fgets(line, sizeof(line), stdin))
		ctl_die(CTL_EXIT_USAGE, "--password -: nothing on standard input");
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0)
		ctl_die(CTL_EXIT_USAGE, "--password -: empty password");
	return line;
}

static void lower_hex(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)(src[i] >= 'A' && src[i] <= 'F' ? src[i] - 'A' + 'a' : src[i]);
	dst[n] = '\0';
}

/* HA1s into md5[33] and sha256[65] from the options (lower-case hex); "" when none. */
static void ha1s(const struct ctl_account *a, struct user_opts *o, char *md5, char *sha256)
{
	md5[0] = sha256[0] = '\0';
	if (o->password) {
		struct sip_str user = {a->raw, a->raw_len}, realm = sip_str_c(a->domain);
		struct sip_str pw;

		if (strcmp(o->password, "-") == 0)
			o->password = password_stdin();
		pw = sip_str_c(o->password);
		if (digest_ha1(DIGEST_MD5, &user, &realm, &pw, md5) ||
		    digest_ha1(DIGEST_SHA256, &user, &realm, &pw, sha256))
			ctl_die(CTL_EXIT_FAIL, "cannot compute HA1 (OpenSSL)");
		return;
	}
	if (o->ha1_md5) {
		lower_hex(md5, o->ha1_md5, 32);
		lower_hex(sha256, o->ha1_sha256, 64);
	}
}

static void on_done(int err, void *arg)
{
	struct ctl *c = arg;

	c->err = err;
	c->done = true;
}

static void print_account(const char *what, const struct ctl_account *a)
{
	fputs(what, stdout);
	show_user_part(ctl_write, NULL, a->user, a->user_len);
	printf("@%s\n", a->domain);
}

/* The directory refuses writes: say where its users are kept instead. */
static void die_read_only(const struct ctl *c, const char *cmd)
{
	ctl_die(CTL_EXIT_FAIL,
		"user %s: the %s directory cannot be written from here; its users are "
		"provisioned where it keeps them (for memory: the users: list of %s)",
		cmd, location_conf_backend(c->cfg->directory),
		c->cfg_path ? c->cfg_path : "the config");
}

static int user_add(struct ctl *c, const struct ctl_account *a, int argc, char **argv)
{
	struct ctl_account al[CTL_MAX_ALIASES];
	struct sip_str aliases[CTL_MAX_ALIASES];
	char md5[DIGEST_HEX_MAX + 1], sha256[DIGEST_HEX_MAX + 1];
	struct user_opts o;
	struct dir_user u;
	int err;

	opts_parse(argc, argv, &o, true);
	if (!o.password && !o.ha1_md5 && !o.auth_off)
		ctl_die(CTL_EXIT_USAGE,
			"user add needs --password, --ha1-md5/--ha1-sha256 or --auth-off");
	ha1s(a, &o, md5, sha256);
	for (size_t i = 0; i < o.n_aliases; i++) {
		ctl_account_parse(o.aliases[i], &al[i]);
		aliases[i] = (struct sip_str){.p = al[i].aor, .len = al[i].aor_len};
	}
	u = (struct dir_user){
	    .username = {.p = a->user, .len = a->user_len},
	    .domain = sip_str_c(a->domain),
	    .ha1_md5 = sip_str_c(md5),
	    .ha1_sha256 = sip_str_c(sha256),
	    .enabled = !o.disabled,
	    .auth_off = o.auth_off,
	    .max_contacts = (uint32_t)o.max_contacts,
	    .aliases = aliases,
	    .n_aliases = o.n_aliases,
	};
	err = ctl_wait(c, directory_user_put(ctl_directory(c), &u, DIR_PUT_CREATE, on_done, c,
					     NULL),
		       "user add");
	if (err == ENOTSUP)
		die_read_only(c, "add");
	if (err == EEXIST)
		ctl_die(CTL_EXIT_FAIL, "user add: that user (or one of its aliases) already exists");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "user add: %s", strerror(err));
	print_account("added ", a);
	return 0;
}

static int user_del(struct ctl *c, const struct ctl_account *a, int argc, char **argv)
{
	struct sip_str user = {.p = a->user, .len = a->user_len}, domain = sip_str_c(a->domain);
	int err;

	(void)argv;
	if (argc > 1)
		ctl_die(CTL_EXIT_USAGE, "user del takes no options");
	err = ctl_wait(c, directory_user_del(ctl_directory(c), &user, &domain, on_done, c, NULL),
		       "user del");
	if (err == ENOTSUP)
		die_read_only(c, "del");
	if (err == ENOENT)
		ctl_die(CTL_EXIT_FAIL, "user del: no such user");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "user del: %s", strerror(err));
	print_account("deleted ", a);
	return 0;
}

/* passwd: the stored user as found, with new secrets; everything else kept. */
struct passwd_state {
	struct ctl *c;
	const char *md5, *sha256;
	int err;
	bool found;
};

static void on_found(int err, const struct dir_user *u, void *arg)
{
	struct passwd_state *st = arg;
	struct dir_user nu;

	st->c->done = true;
	st->c->err = err;
	if (err || !u)
		return;
	st->found = true;
	nu = *u;
	nu.ha1_md5 = sip_str_c(st->md5);
	nu.ha1_sha256 = sip_str_c(st->sha256);
	nu.password = SIP_STR_NULL;
	/* Chained from the callback: the found user's strings are valid only here. */
	st->c->done = false;
	st->err = directory_user_put(ctl_directory(st->c), &nu, DIR_PUT_UPDATE, on_done, st->c,
				     NULL);
	if (st->err) {
		st->c->err = st->err;
		st->c->done = true;
	}
}

static int user_passwd(struct ctl *c, const struct ctl_account *a, int argc, char **argv)
{
	struct sip_str user = {.p = a->user, .len = a->user_len}, domain = sip_str_c(a->domain);
	char md5[DIGEST_HEX_MAX + 1], sha256[DIGEST_HEX_MAX + 1];
	struct passwd_state st = {.c = c, .md5 = md5, .sha256 = sha256};
	struct user_opts o;
	int err;

	opts_parse(argc, argv, &o, false);
	ha1s(a, &o, md5, sha256);
	err = ctl_wait(c, directory_find_user(ctl_directory(c), &user, &domain, on_found, &st,
					      NULL),
		       "user passwd");
	/* One wait covers both: on_found chains the put before the loop sees done. */
	if (err == ENOTSUP)
		die_read_only(c, "passwd");
	if (!err && !st.found)
		err = ENOENT;
	if (err == ENOENT)
		ctl_die(CTL_EXIT_FAIL, "user passwd: no such user");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "user passwd: %s", strerror(err));
	print_account("changed the credentials of ", a);
	return 0;
}

/* list: every user copied, sorted by domain then name, so the output is stable. */
struct user_copy {
	char *buf; /* one allocation: the strings below point into it */
	struct dir_user u;
	struct sip_str *aliases;
};

struct list_state {
	struct ctl *c;
	const char *domain; /* NULL: all */
	struct user_copy *v;
	size_t n, cap;
};

static struct sip_str str_put(char **cur, const struct sip_str *s)
{
	struct sip_str out = {.p = *cur, .len = s->len};

	if (s->len)
		memcpy(*cur, s->p, s->len);
	*cur += s->len;
	return out;
}

static void on_user(int err, const struct dir_user *u, void *arg)
{
	struct list_state *st = arg;
	struct user_copy *uc;
	size_t need = 0;
	char *cur;

	if (!u) {
		st->c->err = err;
		st->c->done = true;
		return;
	}
	if (st->domain && u->domain.len && (u->domain.len != strlen(st->domain) ||
					    memcmp(u->domain.p, st->domain, u->domain.len) != 0))
		return;
	if (st->n == st->cap) {
		size_t cap = st->cap ? 2 * st->cap : 64;
		struct user_copy *v = realloc(st->v, cap * sizeof(*v));

		if (!v)
			ctl_die(CTL_EXIT_FAIL, "out of memory");
		st->v = v;
		st->cap = cap;
	}
	need = u->username.len + u->domain.len + u->ha1_md5.len + u->ha1_sha256.len +
	       u->password.len;
	for (size_t i = 0; i < u->n_aliases; i++)
		need += u->aliases[i].len;
	uc = &st->v[st->n];
	uc->buf = malloc(need + 1);
	uc->aliases = calloc(u->n_aliases + 1, sizeof(*uc->aliases));
	if (!uc->buf || !uc->aliases)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	cur = uc->buf;
	uc->u = *u;
	uc->u.username = str_put(&cur, &u->username);
	uc->u.domain = str_put(&cur, &u->domain);
	uc->u.ha1_md5 = str_put(&cur, &u->ha1_md5);
	uc->u.ha1_sha256 = str_put(&cur, &u->ha1_sha256);
	uc->u.password = str_put(&cur, &u->password);
	for (size_t i = 0; i < u->n_aliases; i++)
		uc->aliases[i] = str_put(&cur, &u->aliases[i]);
	uc->u.aliases = uc->aliases;
	st->n++;
}

static int str_cmp(const struct sip_str *a, const struct sip_str *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->p, b->p, n) : 0;

	return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int user_cmp(const void *pa, const void *pb)
{
	const struct user_copy *a = pa, *b = pb;
	int c = str_cmp(&a->u.domain, &b->u.domain);

	return c ? c : str_cmp(&a->u.username, &b->u.username);
}

static int user_list(struct ctl *c, int argc, char **argv)
{
	struct list_state st = {.c = c, .domain = argc > 0 ? argv[0] : NULL};
	char dom[256];
	int err;

	if (argc > 1)
		ctl_die(CTL_EXIT_USAGE, "user list takes at most a domain");
	if (st.domain) {
		size_t i;

		for (i = 0; st.domain[i] && i + 1 < sizeof(dom); i++)
			dom[i] = (char)(st.domain[i] >= 'A' && st.domain[i] <= 'Z'
						? st.domain[i] - 'A' + 'a'
						: st.domain[i]);
		dom[i] = '\0';
		st.domain = dom;
	}
	if (ctl_in_process(c, true)) {
		char req[300];

		snprintf(req, sizeof(req), "users%s%s", st.domain ? " " : "",
			 st.domain ? st.domain : "");
		return ctl_control(c, req);
	}
	err = ctl_wait(c, directory_user_iter(ctl_directory(c), on_user, &st, NULL), "user list");
	if (err == ENOTSUP)
		ctl_die(CTL_EXIT_FAIL, "user list: the %s directory cannot list its users",
			location_conf_backend(c->cfg->directory));
	if (err)
		ctl_die(CTL_EXIT_FAIL, "user list: %s", strerror(err));
	qsort(st.v, st.n, sizeof(*st.v), user_cmp);
	for (size_t i = 0; i < st.n; i++) {
		show_user(ctl_write, NULL, &st.v[i].u);
		free(st.v[i].buf);
		free(st.v[i].aliases);
	}
	free(st.v);
	return 0;
}

int ctl_user(struct ctl *c, int argc, char **argv)
{
	struct ctl_account a;

	if (argc < 1)
		ctl_die(CTL_EXIT_USAGE, "user: want add, del, passwd or list");
	if (strcmp(argv[0], "list") == 0)
		return user_list(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "del") != 0 &&
	    strcmp(argv[0], "passwd") != 0)
		ctl_die(CTL_EXIT_USAGE, "user: unknown command '%s'", argv[0]);
	if (argc < 2)
		ctl_die(CTL_EXIT_USAGE, "user %s: want USER@DOMAIN", argv[0]);
	ctl_account_parse(argv[1], &a);
	/* getopt sees argv[1..]: the account is its "program name" */
	if (strcmp(argv[0], "add") == 0)
		return user_add(c, &a, argc - 1, argv + 1);
	if (strcmp(argv[0], "del") == 0)
		return user_del(c, &a, argc - 1, argv + 1);
	return user_passwd(c, &a, argc - 1, argv + 1);
}
