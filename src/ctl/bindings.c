/* sipregctl bindings|unbind: the live bindings, through the location interface, or
 * through the running daemon when its store is in-process. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl.h"
#include "ops/show.h"
#include "sip/uri.h"

struct list_state {
	struct ctl *c;
	int64_t now;
};

static void on_binding(int err, const struct binding *b, void *arg)
{
	struct list_state *st = arg;

	if (b) {
		show_binding(ctl_write, NULL, b, st->now);
		return;
	}
	st->c->err = err;
	st->c->done = true;
}

static void on_fetch(int err, const struct binding_set *set, void *arg)
{
	struct list_state *st = arg;

	for (size_t i = 0; !err && i < set->n; i++)
		show_binding(ctl_write, NULL, &set->v[i], st->now);
	st->c->err = err;
	st->c->done = true;
}

int ctl_bindings(struct ctl *c, int argc, char **argv)
{
	struct list_state st = {.c = c, .now = (int64_t)time(NULL)};
	struct ctl_account a;
	struct sip_str aor;
	int err;

	if (argc > 1)
		ctl_die(CTL_EXIT_USAGE, "bindings takes at most an AOR");
	/* The registrar stores the canonical AOR: look up the same bytes. */
	if (argc == 1)
		ctl_account_parse(argv[0], &a);
	if (ctl_in_process(c, false)) {
		char req[sizeof(a.aor) + 16];

		snprintf(req, sizeof(req), "bindings%s%s", argc ? " " : "", argc ? a.aor : "");
		return ctl_control(c, req);
	}
	show_bindings_head(ctl_write, NULL);
	if (argc == 1) {
		aor = (struct sip_str){.p = a.aor, .len = a.aor_len};
		err = location_fetch(ctl_location(c), &aor, st.now, on_fetch, &st, NULL);
	} else {
		err = location_iterate(ctl_location(c), st.now, on_binding, &st, NULL);
	}
	err = ctl_wait(c, err, "bindings");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "bindings: %s", strerror(err));
	return 0;
}

static void on_unbind(int err, void *arg)
{
	struct ctl *c = arg;

	c->err = err;
	c->done = true;
}

int ctl_unbind(struct ctl *c, int argc, char **argv)
{
	struct ctl_account a;
	struct sip_str aor, key;
	char keybuf[4096];
	size_t keylen = 0;
	int err;

	if (argc < 1 || argc > 2)
		ctl_die(CTL_EXIT_USAGE, "unbind wants USER@DOMAIN [CONTACT]");
	ctl_account_parse(argv[0], &a);
	if (argc == 2) {
		/* Bindings are keyed by the §19.1.4 comparison form of their Contact URI. */
		struct sip_str uri = sip_str_c(argv[1]);

		if (sipmsg_uri_key(&uri, keybuf, sizeof(keybuf), &keylen) != 0)
			ctl_die(CTL_EXIT_USAGE, "'%s' is not a SIP URI", argv[1]);
		keybuf[keylen] = '\0';
	}
	if (ctl_in_process(c, false)) {
		char req[sizeof(a.aor) + sizeof(keybuf) + 16];

		for (size_t i = 0; i < keylen; i++) {
			if (keybuf[i] <= 0x20 || keybuf[i] >= 0x7f)
				ctl_die(CTL_EXIT_USAGE, "'%s': a contact with spaces or control "
							"bytes cannot be named here", argv[1]);
		}
		snprintf(req, sizeof(req), "unbind %s%s%s", a.aor, keylen ? " " : "",
			 keylen ? keybuf : "");
		return ctl_control(c, req);
	}
	aor = (struct sip_str){.p = a.aor, .len = a.aor_len};
	key = (struct sip_str){.p = keybuf, .len = keylen};
	err = ctl_wait(c,
		       location_unbind(ctl_location(c), &aor, argc == 2 ? &key : NULL, on_unbind,
				       c, NULL),
		       "unbind");
	if (err == ENOENT)
		ctl_die(CTL_EXIT_FAIL, "unbind: no such binding");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "unbind: %s", strerror(err));
	printf("unbound\n");
	return 0;
}
