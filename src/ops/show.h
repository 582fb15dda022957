/* The operator's view of bindings and users as text lines (show.c): one formatter for
 * sipregctl and for the daemon's control socket, so both print the same columns. */
#ifndef SIPREG_OPS_SHOW_H
#define SIPREG_OPS_SHOW_H

#include <stddef.h>
#include <stdint.h>

#include "sipreg/location.h"

/* Where the text goes: called with pieces of one line and then its "\n". */
typedef void(show_write_h)(const char *p, size_t len, void *arg);

/* "AOR\tCONTACT\tRECEIVED\tEXPIRES\tUSER-AGENT\tREGISTERED-BY" */
void show_bindings_head(show_write_h *w, void *arg);
/* One binding, expiry in seconds from now. Client text is escaped (\xHH). */
void show_binding(show_write_h *w, void *arg, const struct binding *b, int64_t now);
/* One user: "user@domain\tenabled|disabled\tauth:on|off\tmax_contacts:N\tha1:md5+sha256
 * \taliases:a,b" (no secret is ever shown). */
void show_user(show_write_h *w, void *arg, const struct dir_user *u);

/* Every stored field of b as one line of space-separated words, for a program to read
 * back with show_record_parse() (sipregctl reading the control socket): each byte string
 * %XX-escaped (every byte outside '!'..'~', and '%'), an empty one as "-". */
void show_binding_record(show_write_h *w, void *arg, const struct binding *b);
/* Parse such a line in place into *b, whose strings then point into line. Returns 0 or
 * EINVAL. */
int show_record_parse(char *line, struct binding *b);

/* A canonical (escaped) user part as the directory keys it: printable bytes as they are,
 * others as %XX. */
void show_user_part(show_write_h *w, void *arg, const char *p, size_t len);
/* A SIP byte string for a terminal: printable ASCII as is, anything else (and '\') as
 * \xHH. */
void show_bytes(show_write_h *w, void *arg, const char *p, size_t len);

#endif
