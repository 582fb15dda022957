/* Character classes and comparisons of RFC 3261's text (LWS, case-insensitive tokens), for
 * every layer that reads SIP bytes: the TCP framing, the parse, digest credentials. */
#ifndef SIPREG_UTIL_TEXT_H
#define SIPREG_UTIL_TEXT_H

#include <stdbool.h>
#include <stddef.h>

static inline bool text_is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool text_is_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline bool text_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool text_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool text_is_alnum(char c)
{
	return text_is_alpha(c) || text_is_digit(c);
}

static inline char text_to_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) comparison of a[0..alen) with the C string b. */
bool text_mem_ieq(const char *a, size_t alen, const char *b);

#endif
