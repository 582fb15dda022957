/* sipregctl's pieces (src/ctl/): the account an operator names, the backend it reaches
 * and the loop that waits for it. Commands live one family a file: user.c, bindings.c,
 * db.c. */
#ifndef SIPREG_CTL_H
#define SIPREG_CTL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "sipreg/location.h"

/* Exit statuses: 1 the operation failed, 2 the command line is wrong. */
#define CTL_EXIT_FAIL  1
#define CTL_EXIT_USAGE 2

__attribute__((format(printf, 2, 3), noreturn)) void ctl_die(int code, const char *fmt, ...);

/* An AOR as the directory and the bindings key it: the user part canonically escaped and
 * the domain lower-cased exactly as the registrar builds an AOR (sipmsg_uri_aor), plus the
 * unescaped user for the HA1s. Strings point into the struct. */
struct ctl_account {
	char aor[2048]; /* "user@domain", canonical, NUL-terminated: the bindings key */
	size_t aor_len;
	char user[2048]; /* canonical user part, NUL-terminated: the users key */
	size_t user_len;
	const char *domain; /* into aor, NUL-terminated */
	char raw[2048];	    /* unescaped user part, for HA1 = H(user:realm:password) */
	size_t raw_len;
};

/* The one way an operator's AOR argument becomes a key, for every command that takes one:
 * USER@DOMAIN or a sip:/sips: URI (port and parameters ignored, as the registrar ignores
 * them), the user part as in a SIP URI (%XX escapes), the domain in any case. Dies with
 * exit 2 on anything else. */
void ctl_account_parse(const char *arg, struct ctl_account *a);

/* What the command line opened. */
struct ctl {
	struct event_base *base;
	struct config *cfg;	  /* from -c, or built for -d */
	const char *cfg_path;	  /* for messages */
	struct location *dir;	  /* opened on first use */
	struct location *loc;
	bool done;		  /* set by a callback: ctl_wait returns */
	int err;		  /* the operation's result, for ctl_wait */
};

/* The directory (users) and the location (bindings), opened through the backend
 * interface on first use; dies when the backend cannot be opened. */
struct location *ctl_directory(struct ctl *c);
struct location *ctl_location(struct ctl *c);
/* Is that section's backend in-process (its store lives in the daemon)? Then only the
 * running daemon can answer: ctl_control() asks it. */
bool ctl_in_process(const struct ctl *c, bool directory);
/* Run the loop until c->done (set with the result in c->err) or the timeout; started is
 * the error of the call that began the operation. Returns the operation's error. */
int ctl_wait(struct ctl *c, int started, const char *what);
/* Send request to the daemon's control socket (control.socket of -c), copy the answer to
 * stdout, return 0 or die with the daemon's error. */
int ctl_control(struct ctl *c, const char *request);
/* The same, handing each answer line but the last (without its newline, NUL-terminated,
 * writable) to line(); lines longer than 8191 bytes are refused. */
int ctl_control_each(struct ctl *c, const char *request, void (*line)(char *l, void *arg),
		     void *arg);

/* The command families. argv[0] is the word after the family name. */
int ctl_user(struct ctl *c, int argc, char **argv);
int ctl_bindings(struct ctl *c, int argc, char **argv);
int ctl_unbind(struct ctl *c, int argc, char **argv);
int ctl_db(struct ctl *c, int argc, char **argv);
/* show peers|peer, lookup (peers.c). */
int ctl_show(struct ctl *c, int argc, char **argv);
int ctl_lookup(struct ctl *c, int argc, char **argv);
/* The running daemon's own state, always through its control socket (ops.c). */
int ctl_debug(struct ctl *c, int argc, char **argv);
int ctl_stats(struct ctl *c, int argc, char **argv);

/* stdout writer for ops/show.h. */
void ctl_write(const char *p, size_t len, void *arg);

#endif
