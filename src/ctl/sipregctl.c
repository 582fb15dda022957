/* sipregctl: the operator's tool for a PostgreSQL-backed sipreg cluster: schema migrations,
 * user provisioning (HA1s only, never a clear password) and the live bindings. Synchronous
 * libpq: it runs beside the daemons, never inside their event loop. */
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "sipreg/location_backend.h"
#include "registrar/digest.h"
#include "pg_conf.h"
#include "pg_schema.h"
#include "sip/msg.h"

#define CTL_MAX_ALIASES 64

static const char ctl_usage[] =
    "usage: sipregctl [-d CONNINFO | -c sipregd.yaml] COMMAND\n"
    "\n"
    "  db migrate                 apply the schema migrations (idempotent, concurrency-safe)\n"
    "  db status                  show the schema version and what the database holds\n"
    "  user add USER@DOMAIN [--password P | --ha1-md5 H --ha1-sha256 H] [--auth-off]\n"
    "                           [--max-contacts N] [--alias USER@DOMAIN]... [--disabled]\n"
    "  user del USER@DOMAIN\n"
    "  user passwd USER@DOMAIN (--password P | --ha1-md5 H --ha1-sha256 H)\n"
    "  user list [DOMAIN]\n"
    "  bindings [USER@DOMAIN]     list live bindings (all, or of one AOR)\n"
    "\n"
    "-d takes a libpq connection string (default: libpq's PG* environment); -c reads it from\n"
    "the location: (db, bindings) or directory: (user) section of a sipregd config.\n"
    "--password - reads the password from the first line of standard input. USER is written\n"
    "as in a SIP URI (%XX escapes), the domain in any case, and a sip:/sips: URI is taken\n"
    "too; every command keys it in the canonical form the registrar uses, and the HA1s are\n"
    "computed over the unescaped user name.\n";

static void ctl_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void ctl_die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("sipregctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* libpq's message without its trailing newline. */
static const char *ctl_pqmsg(const char *msg)
{
	static char buf[1024];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", msg ? msg : "");
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return buf;
}

/* ---- bytes <-> what an operator types and reads -------------------------------------- */

static int ctl_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo %XX escapes of s[0..len) into out (at least len bytes). Returns the byte count, or
 * -1 for a broken escape. */
static long ctl_unescape(const char *s, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (i + 2 >= len)
			return -1;
		if (ctl_hexval(s[i + 1]) < 0 || ctl_hexval(s[i + 2]) < 0)
			return -1;
		out[n++] = (char)(ctl_hexval(s[i + 1]) * 16 + ctl_hexval(s[i + 2]));
		i += 2;
	}
	return (long)n;
}

/* A stored (canonical, escaped) user part: printed as is, anything unprintable as %XX. */
static void ctl_print_user(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c > 0x20 && c < 0x7f)
			putchar(c);
		else
			printf("%%%02X", c);
	}
}

/* A SIP byte string for a terminal: printable ASCII as is, anything else as \xHH. */
static void ctl_print_bytes(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
}

static size_t ctl_hex_decode(const char *hex, char *out)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2)
		out[n++] = (char)(ctl_hexval(hex[0]) * 16 + ctl_hexval(hex[1]));
	return n;
}

/* An AOR as the directory and the bindings key it: the user part canonically escaped
 * and the domain lower-cased exactly as the registrar builds an AOR (sipmsg_uri_aor),
 * plus the unescaped user for the HA1s. Strings point into the struct. */
struct ctl_account {
	char aor[2048]; /* "user@domain", canonical, NUL-terminated: the bindings key */
	size_t aor_len;
	char user[2048]; /* canonical user part, NUL-terminated: the users key */
	size_t user_len;
	const char *domain; /* into aor, NUL-terminated */
	char raw[2048];	    /* unescaped user part, for HA1 = H(user:realm:password) */
	size_t raw_len;
};

/* The one way an operator's AOR argument becomes a key, for every command that takes one
 * (user add/del/passwd, --alias, bindings), so what `user add` stored is what the others
 * find: USER@DOMAIN or a sip:/sips: URI (any case; port and parameters ignored, as the
 * registrar ignores them), the user part as in a SIP URI (%XX escapes), the domain in any
 * case. Dies with a message on anything else. */
static void ctl_account_parse(const char *arg, struct ctl_account *a)
{
	char uri[1100];
	struct sip_str u, user, domain;
	const char *body = arg, *at;
	long n;

	/* A user part cannot hold an unescaped ':', so a leading scheme is unambiguous. */
	if (strncasecmp(body, "sip:", 4) == 0)
		body += 4;
	else if (strncasecmp(body, "sips:", 5) == 0)
		body += 5;
	at = strchr(body, '@');
	if (!at || at == body || !at[1] || strlen(arg) > 500)
		ctl_die(2, "'%s' is not USER@DOMAIN", arg);
	if (ctl_unescape(body, (size_t)(at - body), a->raw) <= 0)
		ctl_die(2, "bad %%XX escape in user '%.*s'", (int)(at - body), body);
	snprintf(uri, sizeof(uri), "sip:%s", body);
	u = sip_str_c(uri);
	if (sipmsg_uri_aor(&u, a->aor, sizeof(a->aor), &user, &domain))
		ctl_die(2, "'%s' is not a valid USER@DOMAIN", arg);
	a->aor_len = user.len + 1 + domain.len;
	memcpy(a->user, user.p, user.len);
	a->user[user.len] = '\0';
	a->user_len = user.len;
	a->domain = a->aor + user.len + 1;
	/* The HA1 is over the bytes the canonical form stands for. */
	n = ctl_unescape(a->user, a->user_len, a->raw);
	if (n <= 0)
		ctl_die(2, "'%s' is not a valid USER@DOMAIN", arg);
	a->raw_len = (size_t)n;
}

/* ---- connection ------------------------------------------------------------------------ */

static PGconn *ctl_connect(const char *conninfo)
{
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"sipregctl", conninfo ? conninfo : "", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (!c)
		ctl_die(1, "out of memory");
	if (PQstatus(c) != CONNECTION_OK)
		ctl_die(1, "cannot connect to the database: %s", ctl_pqmsg(PQerrorMessage(c)));
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

/* Run a statement with text parameters (lens[i] < 0: a C string; formats binary when
 * lens[i] >= 0, for bytea). Dies on error with what + the server's message. */
static PGresult *ctl_exec(PGconn *c, const char *what, const char *sql, int n,
			  const char *const *vals, const int *lens, ExecStatusType want)
{
	int formats[16], lengths[16];
	PGresult *r;

	for (int i = 0; i < n && i < 16; i++) {
		formats[i] = lens && lens[i] >= 0;
		lengths[i] = lens && lens[i] >= 0 ? lens[i] : 0;
	}
	r = PQexecParams(c, sql, n, NULL, vals, lengths, formats, 0);
	if (PQresultStatus(r) != want) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (state && strcmp(state, "42P01") == 0)
			ctl_die(1, "%s: the schema is missing: run `sipregctl db migrate`",
				what);
		ctl_die(1, "%s: %s", what, ctl_pqmsg(PQresultErrorMessage(r)));
	}
	return r;
}

static void ctl_tx(PGconn *c, const char *cmd)
{
	PQclear(ctl_exec(c, cmd, cmd, 0, NULL, NULL, PGRES_COMMAND_OK));
}

/* ---- db --------------------------------------------------------------------------------- */

static int ctl_db(PGconn *c, int argc, char **argv)
{
	char err[1024];
	int from = 0, to = 0, rc;

	if (argc != 1)
		ctl_die(2, "db: want migrate or status");
	if (strcmp(argv[0], "migrate") == 0) {
		rc = pg_schema_migrate(c, &from, &to, err, sizeof(err));
		if (rc)
			ctl_die(1, "db migrate: %s", err);
		if (from == to)
			printf("schema is up to date (version %d)\n", to);
		else
			printf("schema migrated from version %d to %d\n", from, to);
		return 0;
	}
	if (strcmp(argv[0], "status") == 0) {
		PGresult *r;

		if (pg_schema_version(c, &from, err, sizeof(err)))
			ctl_die(1, "db status: %s", err);
		printf("schema version %d of %zu%s\n", from, pg_migrations_count,
		       from < (int)pg_migrations_count ? " (run `sipregctl db migrate`)" : "");
		if (from == 0)
			return 0;
		r = ctl_exec(
		    c, "db status",
		    "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM users), "
		    "(SELECT count(*) FROM bindings WHERE expires > now()), "
		    "(SELECT count(*) FROM bindings WHERE expires <= now())",
		    0, NULL, NULL, PGRES_TUPLES_OK);
		printf("domains %s\nusers %s\nlive bindings %s\nexpired bindings not yet swept "
		       "%s\n",
		       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
		       PQgetvalue(r, 0, 3));
		PQclear(r);
		return 0;
	}
	ctl_die(2, "db: unknown command '%s'", argv[0]);
}

/* ---- user ------------------------------------------------------------------------------- */

struct ctl_user_opts {
	const char *password;
	const char *ha1_md5, *ha1_sha256;
	bool auth_off, disabled;
	long max_contacts;
	const char *aliases[CTL_MAX_ALIASES];
	size_t n_aliases;
};

static bool ctl_is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (ctl_hexval(s[i]) < 0)
			return false;
	}
	return true;
}

static void ctl_user_opts_parse(int argc, char **argv, struct ctl_user_opts *o, bool add)
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
				ctl_die(2, "user passwd takes only --password or "
					   "--ha1-md5/--ha1-sha256");
			if (ch == 'o')
				o->auth_off = true;
			else if (ch == 'x')
				o->disabled = true;
			else if (ch == 'n') {
				errno = 0;
				o->max_contacts = strtol(optarg, &end, 10);
				if (errno || *end || o->max_contacts < 0 ||
				    o->max_contacts > 1000000)
					ctl_die(
					    2,
					    "--max-contacts wants a number from 0 to 1000000");
			} else {
				if (o->n_aliases == CTL_MAX_ALIASES)
					ctl_die(2, "at most %d aliases", CTL_MAX_ALIASES);
				o->aliases[o->n_aliases++] = optarg;
			}
			break;
		default:
			ctl_die(2, "bad option (see sipregctl --help)");
		}
	}
	if (optind != argc)
		ctl_die(2, "unexpected argument '%s'", argv[optind]);
	if (o->password && (o->ha1_md5 || o->ha1_sha256))
		ctl_die(2, "give --password or HA1s, not both");
	if ((o->ha1_md5 != NULL) != (o->ha1_sha256 != NULL))
		ctl_die(2, "give both --ha1-md5 and --ha1-sha256 (phones use either)");
	if (o->ha1_md5 && (!ctl_is_hex(o->ha1_md5, 32) || !ctl_is_hex(o->ha1_sha256, 64)))
		ctl_die(2, "--ha1-md5 wants 32 hex digits, --ha1-sha256 64");
	if (!add && !o->password && !o->ha1_md5)
		ctl_die(2, "user passwd needs --password or --ha1-md5 and --ha1-sha256");
}

/* The password from the first line of stdin, for --password - (kept out of `ps`). */
static const char *ctl_password_stdin(void)
{
	static char line[1024];
	size_t n;

	if (!fgets(line, sizeof(line), stdin))
		ctl_die(2, "--password -: nothing on standard input");
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0)
		ctl_die(2, "--password -: empty password");
	return line;
}

/* HA1s into md5[33] and sha256[65] from the options (lower-cased hex). */
static void ctl_ha1s(const struct ctl_account *a, struct ctl_user_opts *o, char *md5,
		     char *sha256)
{
	md5[0] = sha256[0] = '\0';
	if (o->password) {
		struct sip_str user = {a->raw, a->raw_len}, realm = sip_str_c(a->domain);
		struct sip_str pw;

		if (strcmp(o->password, "-") == 0)
			o->password = ctl_password_stdin();
		pw = sip_str_c(o->password);
		if (digest_ha1(DIGEST_MD5, &user, &realm, &pw, md5) ||
		    digest_ha1(DIGEST_SHA256, &user, &realm, &pw, sha256))
			ctl_die(1, "cannot compute HA1 (OpenSSL)");
		return;
	}
	if (o->ha1_md5) {
		for (size_t i = 0; i <= 32; i++)
			md5[i] = (char)(o->ha1_md5[i] >= 'A' && o->ha1_md5[i] <= 'F'
					    ? o->ha1_md5[i] - 'A' + 'a'
					    : o->ha1_md5[i]);
		for (size_t i = 0; i <= 64; i++)
			sha256[i] = (char)(o->ha1_sha256[i] >= 'A' && o->ha1_sha256[i] <= 'F'
					       ? o->ha1_sha256[i] - 'A' + 'a'
					       : o->ha1_sha256[i]);
	}
}

/* Aliases as a comma-separated list of hex byte strings (user unescaped, domain lower). */
static char *ctl_aliases_hex(struct ctl_user_opts *o)
{
	size_t cap = 1, n = 0;
	char *out;

	for (size_t i = 0; i < o->n_aliases; i++)
		cap += 2 * sizeof(((struct ctl_account *)0)->aor) + 2;
	out = malloc(cap);
	if (!out)
		ctl_die(1, "out of memory");
	out[0] = '\0';
	for (size_t i = 0; i < o->n_aliases; i++) {
		struct ctl_account a;

		ctl_account_parse(o->aliases[i], &a);
		if (i)
			out[n++] = ',';
		for (size_t k = 0; k < a.user_len; k++)
			n += (size_t)sprintf(out + n, "%02x", (unsigned char)a.user[k]);
		n += (size_t)sprintf(out + n, "40"); /* '@' */
		for (const char *d = a.domain; *d; d++)
			n += (size_t)sprintf(out + n, "%02x", (unsigned char)*d);
	}
	return out;
}

static int ctl_user_add(PGconn *c, struct ctl_account *a, int argc, char **argv)
{
	struct ctl_user_opts o;
	char md5[DIGEST_HEX_MAX + 1], sha256[DIGEST_HEX_MAX + 1], maxc[16];
	char *aliases;
	PGresult *r;

	ctl_user_opts_parse(argc, argv, &o, true);
	if (!o.password && !o.ha1_md5 && !o.auth_off)
		ctl_die(2, "user add needs --password, --ha1-md5/--ha1-sha256 or --auth-off");
	ctl_ha1s(a, &o, md5, sha256);
	aliases = ctl_aliases_hex(&o);
	snprintf(maxc, sizeof(maxc), "%ld", o.max_contacts);
	{
		const char *dv[1] = {a->domain};
		const char *vals[8] = {a->user,
				       a->domain,
				       md5,
				       sha256,
				       o.disabled ? "f" : "t",
				       o.auth_off ? "t" : "f",
				       maxc,
				       aliases};
		const int lens[8] = {(int)a->user_len, -1, -1, -1, -1, -1, -1, -1};

		ctl_tx(c, "BEGIN");
		PQclear(
		    ctl_exec(c, "adding the domain",
			     "INSERT INTO domains (domain) VALUES ($1) ON CONFLICT DO NOTHING",
			     1, dv, NULL, PGRES_COMMAND_OK));
		r = PQexecParams(
		    c,
		    "INSERT INTO users (username, domain, ha1_md5, ha1_sha256, enabled, "
		    "auth_off, max_contacts, aliases) VALUES ($1, $2, $3, $4, $5, $6, $7, "
		    "ARRAY(SELECT decode(h, 'hex') FROM "
		    "unnest(string_to_array(nullif($8, ''), ',')) AS h))",
		    8, NULL, vals, lens, (const int[]){1, 0, 0, 0, 0, 0, 0, 0}, 0);
	}
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (state && strcmp(state, "23505") == 0)
			ctl_die(1, "user add: that user already exists");
		ctl_die(1, "user add: %s", ctl_pqmsg(PQresultErrorMessage(r)));
	}
	PQclear(r);
	ctl_tx(c, "COMMIT");
	free(aliases);
	printf("added ");
	ctl_print_user(a->user, a->user_len);
	printf("@%s\n", a->domain);
	return 0;
}

static int ctl_user_del(PGconn *c, struct ctl_account *a, int argc, char **argv)
{
	const char *vals[2] = {a->user, a->domain};
	const int lens[2] = {(int)a->user_len, -1};
	PGresult *r;

	(void)argv;
	if (argc > 1)
		ctl_die(2, "user del takes no options");
	r = ctl_exec(c, "user del", "DELETE FROM users WHERE username = $1 AND domain = $2", 2,
		     vals, lens, PGRES_COMMAND_OK);
	if (strcmp(PQcmdTuples(r), "1") != 0)
		ctl_die(1, "user del: no such user");
	PQclear(r);
	printf("deleted ");
	ctl_print_user(a->user, a->user_len);
	printf("@%s\n", a->domain);
	return 0;
}

static int ctl_user_passwd(PGconn *c, struct ctl_account *a, int argc, char **argv)
{
	struct ctl_user_opts o;
	char md5[DIGEST_HEX_MAX + 1], sha256[DIGEST_HEX_MAX + 1];
	PGresult *r;

	ctl_user_opts_parse(argc, argv, &o, false);
	ctl_ha1s(a, &o, md5, sha256);
	{
		const char *vals[4] = {a->user, a->domain, md5, sha256};
		const int lens[4] = {(int)a->user_len, -1, -1, -1};

		r = ctl_exec(
		    c, "user passwd",
		    "UPDATE users SET ha1_md5 = $3, ha1_sha256 = $4, updated_at = now() "
		    "WHERE username = $1 AND domain = $2",
		    4, vals, lens, PGRES_COMMAND_OK);
	}
	if (strcmp(PQcmdTuples(r), "1") != 0)
		ctl_die(1, "user passwd: no such user");
	PQclear(r);
	printf("changed the credentials of ");
	ctl_print_user(a->user, a->user_len);
	printf("@%s\n", a->domain);
	return 0;
}

static int ctl_user_list(PGconn *c, int argc, char **argv)
{
	const char *vals[1] = {argc > 0 ? argv[0] : NULL};
	PGresult *r;
	char *buf;

	if (argc > 1)
		ctl_die(2, "user list takes at most a domain");
	r = ctl_exec(
	    c, "user list",
	    "SELECT encode(username, 'hex'), domain, enabled, auth_off, max_contacts, "
	    "ha1_md5 <> '', ha1_sha256 <> '', "
	    "array_to_string(ARRAY(SELECT encode(a, 'hex') FROM unnest(aliases) a), ',') "
	    "FROM users WHERE $1::text IS NULL OR domain = lower($1) "
	    "ORDER BY domain, username",
	    1, vals, NULL, PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *hex = PQgetvalue(r, i, 0), *al = PQgetvalue(r, i, 7);
		size_t n;

		buf = malloc(strlen(hex) / 2 + strlen(al) / 2 + 1);
		if (!buf)
			ctl_die(1, "out of memory");
		n = ctl_hex_decode(hex, buf);
		ctl_print_user(buf, n);
		printf(
		    "@%s\t%s\tauth:%s\tmax_contacts:%s\tha1:%s%s%s\taliases:",
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)[0] == 't' ? "enabled" : "disabled",
		    PQgetvalue(r, i, 3)[0] == 't' ? "off" : "on", PQgetvalue(r, i, 4),
		    PQgetvalue(r, i, 5)[0] == 't' ? "md5" : "",
		    PQgetvalue(r, i, 5)[0] == 't' && PQgetvalue(r, i, 6)[0] == 't' ? "+" : "",
		    PQgetvalue(r, i, 6)[0] == 't' ? "sha256" : "");
		while (*al) {
			const char *comma = strchr(al, ',');
			size_t len = comma ? (size_t)(comma - al) : strlen(al);
			char hexbuf[2048];
			const char *at;

			if (len >= sizeof(hexbuf))
				len = sizeof(hexbuf) - 2;
			memcpy(hexbuf, al, len);
			hexbuf[len] = '\0';
			n = ctl_hex_decode(hexbuf, buf);
			at = memrchr(buf, '@', n);
			ctl_print_user(buf, at ? (size_t)(at - buf) : n);
			if (at)
				fwrite(at, 1, n - (size_t)(at - buf), stdout);
			al += len;
			if (*al == ',') {
				al++;
				putchar(',');
			}
		}
		putchar('\n');
		free(buf);
	}
	PQclear(r);
	return 0;
}

static int ctl_user(PGconn *c, int argc, char **argv)
{
	struct ctl_account a;
	int rc;

	if (argc < 1)
		ctl_die(2, "user: want add, del, passwd or list");
	if (strcmp(argv[0], "list") == 0)
		return ctl_user_list(c, argc - 1, argv + 1);
	if (argc < 2)
		ctl_die(2, "user %s: want USER@DOMAIN", argv[0]);
	ctl_account_parse(argv[1], &a);
	/* getopt sees argv[1..]: the account is its "program name" */
	if (strcmp(argv[0], "add") == 0)
		rc = ctl_user_add(c, &a, argc - 1, argv + 1);
	else if (strcmp(argv[0], "del") == 0)
		rc = ctl_user_del(c, &a, argc - 1, argv + 1);
	else if (strcmp(argv[0], "passwd") == 0)
		rc = ctl_user_passwd(c, &a, argc - 1, argv + 1);
	else
		ctl_die(2, "user: unknown command '%s'", argv[0]);
	return rc;
}

/* ---- bindings --------------------------------------------------------------------------- */

static int64_t ctl_i64(const PGresult *r, int row, int col)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
	uint64_t u = 0;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		u = u << 8 | p[i];
	return (int64_t)u;
}

static void ctl_print_col(const PGresult *r, int row, int col)
{
	ctl_print_bytes(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static int ctl_bindings(PGconn *c, int argc, char **argv)
{
	struct ctl_account a;
	const char *vals[1] = {NULL};
	int lens[1] = {0};
	PGresult *r;

	if (argc > 1)
		ctl_die(2, "bindings takes at most an AOR");
	if (argc == 1) {
		/* The registrar stores the canonical AOR: look up the same bytes. */
		ctl_account_parse(argv[0], &a);
		vals[0] = a.aor;
		lens[0] = (int)a.aor_len;
	}
	r = PQexecParams(
	    c,
	    "SELECT aor, contact, received_proto, coalesce(host(received_ip), ''), "
	    "received_port::bigint, ceil(extract(epoch FROM expires - now()))::bigint, "
	    "user_agent, registered_by FROM bindings "
	    "WHERE expires > now() AND ($1::bytea IS NULL OR aor = $1) "
	    "ORDER BY aor, coalesce(q, 1000) DESC, updated_at DESC",
	    1, NULL, vals, lens, (const int[]){1}, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		if (state && strcmp(state, "42P01") == 0)
			ctl_die(1,
				"bindings: the schema is missing: run `sipregctl db migrate`");
		ctl_die(1, "bindings: %s", ctl_pqmsg(PQresultErrorMessage(r)));
	}
	printf("AOR\tCONTACT\tRECEIVED\tEXPIRES\tUSER-AGENT\tREGISTERED-BY\n");
	for (int i = 0; i < PQntuples(r); i++) {
		const char *ip = PQgetvalue(r, i, 3);
		bool v6 = strchr(ip, ':') != NULL;

		ctl_print_col(r, i, 0);
		putchar('\t');
		ctl_print_col(r, i, 1);
		printf("\t%s:%s%s%s:%lld\t%lld\t", PQgetvalue(r, i, 2), v6 ? "[" : "", ip,
		       v6 ? "]" : "", (long long)ctl_i64(r, i, 4), (long long)ctl_i64(r, i, 5));
		ctl_print_col(r, i, 6);
		putchar('\t');
		ctl_print_col(r, i, 7);
		putchar('\n');
	}
	PQclear(r);
	return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

/* conninfo from the config file's section (directory: for users, else location:). */
static char *ctl_conninfo_from_config(const char *path, bool directory)
{
	struct config *cfg = NULL;
	const struct location_conf *lc;
	const struct pg_conf *pc;
	char err[512];
	char *ci;

	if (config_load(&cfg, path, err, sizeof(err)))
		ctl_die(1, "%s", err);
	lc = directory ? cfg->directory : cfg->location;
	pc = location_conf_of(lc, &location_backend_pg);
	if (!pc)
		ctl_die(1, "%s: the %s backend is '%s', not pg with a conninfo", path,
			directory ? "directory" : "location", location_conf_backend(lc));
	ci = strdup(pc->conninfo);
	if (!ci)
		ctl_die(1, "out of memory");
	config_free(&cfg);
	return ci;
}

int main(int argc, char **argv)
{
	const char *conninfo = NULL, *cfgpath = NULL;
	char *owned = NULL;
	PGconn *c;
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(ctl_usage, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("sipregctl %s (schema version %zu)\n", SIPREG_VERSION,
			       pg_migrations_count);
			return 0;
		}
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			if (argv[i][1] == 'd')
				conninfo = argv[++i];
			else
				cfgpath = argv[++i];
			continue;
		}
		ctl_die(2, "unknown option '%s'\n%s", argv[i], ctl_usage);
	}
	if (i >= argc) {
		fputs(ctl_usage, stderr);
		return 2;
	}
	if (conninfo && cfgpath)
		ctl_die(2, "give -d or -c, not both");
	if (cfgpath)
		conninfo = owned =
		    ctl_conninfo_from_config(cfgpath, strcmp(argv[i], "user") == 0);
	if (strcmp(argv[i], "db") != 0 && strcmp(argv[i], "user") != 0 &&
	    strcmp(argv[i], "bindings") != 0)
		ctl_die(2, "unknown command '%s'\n%s", argv[i], ctl_usage);
	c = ctl_connect(conninfo);
	if (strcmp(argv[i], "db") == 0)
		rc = ctl_db(c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "user") == 0)
		rc = ctl_user(c, argc - i - 1, argv + i + 1);
	else
		rc = ctl_bindings(c, argc - i - 1, argv + i + 1);
	PQfinish(c);
	free(owned);
	return rc;
}
