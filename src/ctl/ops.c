/* sipregctl's view of one running sipregd, through its control socket whatever the
 * backend: the per-IP SIP trace (debug ip|list) and the counters (stats [--json]). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

int ctl_debug(struct ctl *c, int argc, char **argv)
{
	char req[256];

	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return ctl_control(c, "debug list");
	if (argc < 2 || argc > 3 || strcmp(argv[0], "ip") != 0 ||
	    (argc == 3 && strcmp(argv[2], "on") != 0 && strcmp(argv[2], "off") != 0))
		ctl_die(CTL_EXIT_USAGE, "usage: sipregctl debug ip ADDR [on|off] | debug list");
	/* The daemon checks the address; only what its request line may carry is sent. */
	for (const char *p = argv[1]; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f)
			ctl_die(CTL_EXIT_USAGE,
				"debug ip: want a numeric IPv4 or IPv6 address");
	}
	if (snprintf(req, sizeof(req), "debug ip %s %s", argv[1], argc == 3 ? argv[2] : "on") >=
	    (int)sizeof(req))
		ctl_die(CTL_EXIT_USAGE, "debug ip: want a numeric IPv4 or IPv6 address");
	return ctl_control(c, req);
}

/* "name value" or "name.label value" -> {"name": value} or {"name": {"label": value}}. */
static void ctl_stats_json_line(char *line, void *arg)
{
	json_t *root = arg, *group;
	const char *sp = strchr(line, ' '), *dot;
	char name[128], *end;
	unsigned long long v;
	size_t len;

	if (!sp || (len = (size_t)(sp - line)) >= sizeof(name))
		ctl_die(CTL_EXIT_FAIL, "stats: unexpected line from sipregd: %s", line);
	errno = 0;
	v = strtoull(sp + 1, &end, 10);
	if (errno || *end || end == sp + 1)
		ctl_die(CTL_EXIT_FAIL, "stats: unexpected line from sipregd: %s", line);
	memcpy(name, line, len);
	name[len] = '\0';
	dot = strchr(name, '.');
	if (!dot) {
		json_object_set_new(root, name, json_integer((json_int_t)v));
		return;
	}
	name[dot - name] = '\0';
	group = json_object_get(root, name);
	if (!group) {
		group = json_object();
		if (!group || json_object_set_new(root, name, group) != 0)
			ctl_die(CTL_EXIT_FAIL, "out of memory");
	}
	json_object_set_new(group, dot + 1, json_integer((json_int_t)v));
}

int ctl_stats(struct ctl *c, int argc, char **argv)
{
	json_t *root;
	int rc;

	if (argc == 0)
		return ctl_control(c, "stats");
	if (argc != 1 || strcmp(argv[0], "--json") != 0)
		ctl_die(CTL_EXIT_USAGE, "usage: sipregctl stats [--json]");
	root = json_object();
	if (!root)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	rc = ctl_control_each(c, "stats", ctl_stats_json_line, root);
	if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		ctl_die(CTL_EXIT_FAIL, "cannot write the JSON");
	fputc('\n', stdout);
	json_decref(root);
	return rc;
}
