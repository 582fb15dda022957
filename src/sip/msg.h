/* A received SIP message: libosip2's parse plus the checks libosip2 leaves to us (version,
 * mandatory headers, CSeq, Content-Length, numeric ranges, URI schemes and hosts) and the
 * raw-text views that must not pass through C strings (%00 in URIs). */
#ifndef SIPREG_SIPMSG_H
#define SIPREG_SIPMSG_H

#include <osipparser2/osip_parser.h>
#include <stdbool.h>
#include <stdint.h>

#include "sip/uri.h"
#include "sipreg/types.h"

enum sip_method {
	SIP_M_UNKNOWN = 0,
	SIP_M_REGISTER,
	SIP_M_OPTIONS,
	SIP_M_ACK,
	SIP_M_INVITE,
	SIP_M_BYE,
	SIP_M_CANCEL,
	SIP_M_SUBSCRIBE,
	SIP_M_NOTIFY,
	SIP_M_MESSAGE,
	SIP_M_INFO,
	SIP_M_PRACK,
	SIP_M_UPDATE,
	SIP_M_REFER,
	SIP_M_PUBLISH,
};

/* The headers the parse records where they stand (see struct sipmsg's index). */
enum sipmsg_hdr {
	SIPMSG_HDR_OTHER = 0,
	SIPMSG_HDR_VIA,
	SIPMSG_HDR_FROM,
	SIPMSG_HDR_TO,
	SIPMSG_HDR_CALL_ID,
	SIPMSG_HDR_CSEQ,
	SIPMSG_HDR_CONTACT,
	SIPMSG_HDR_CLEN,
	SIPMSG_HDR_EXPIRES,
	SIPMSG_HDR_MAXFWD,
	SIPMSG_HDR_CTYPE,
	SIPMSG_HDR_REQUIRE,
	SIPMSG_HDR_SUPPORTED,
	SIPMSG_HDR_PATH,
	SIPMSG_HDR_USER_AGENT,
	SIPMSG_HDR_AUTHORIZATION,
	SIPMSG_HDR_COUNT
};

/* Room for this many recorded headers; a message with more is read by rescanning. */
#define SIPMSG_INDEX_MAX 24

/* A Contact value as raw text. */
struct sipmsg_contact {
	struct sip_str uri;      /* the URI, raw bytes as in the message (no <>) */
	struct sip_str params;   /* header params after the URI, raw, starting at ';' or empty */
};

struct osip_arena;

struct sipmsg {
	osip_message_t *osip;    /* owned */
	struct osip_arena *arena; /* owned: where libosip2 built osip, NULL = malloc */
	char *raw;               /* owned copy of the bytes */
	size_t raw_len;
	bool is_response;
	enum sip_method method;
	struct sip_str method_name;
	struct sip_str ruri;     /* raw Request-URI (libosip2 unescapes its copy) */
	uint32_t cseq;
	struct sip_str call_id;
	struct sip_str branch;   /* top Via branch, empty if none */
	bool branch_rfc3261;     /* branch starts with z9hG4bK and has more after it */
	struct sip_str via_host; /* top Via sent-by host, brackets stripped */
	uint16_t via_port;       /* 0 = absent */
	bool via_rport;          /* top Via has rport */
	struct sip_str from_tag;
	struct sip_str to_tag;
	int64_t expires_hdr;     /* Expires header, -1 = absent; clamped to UINT32_MAX */
	/* Raw To URI (no <>), for the AOR: libosip2 unescapes user parts in place. */
	struct sip_str to_uri;
	bool contact_star;       /* a Contact: * was present */
	struct sipmsg_contact *contacts; /* raw Contact values in order, owned */
	size_t n_contacts;
	/* Every header of enum sipmsg_hdr in message order with its raw trimmed value,
	 * recorded by the parse's one pass so that the registrar, auth and the responses
	 * do not scan the raw text again. index_full: more than SIPMSG_INDEX_MAX of them,
	 * the index is incomplete and readers scan the raw text instead. */
	struct {
		uint8_t id;
		struct sip_str value;
	} index[SIPMSG_INDEX_MAX];
	uint8_t n_index;
	bool index_full;
};

/* Parse and validate bytes from the wire. Returns:
 *  0         *mp is a message that passed every check;
 *  EBADMSG   the message is a request that fails a check: *mp is set when enough of it is
 *            readable to answer, *status_r / *reason_r tell the answer (400, 416, 505...);
 *            *mp NULL means answer with sipresp_error_raw() or drop;
 *  ENOMEM.
 * *mp is owned by the caller: sipmsg_free(). */
int sipmsg_parse(struct sipmsg **mp, const char *buf, size_t len, int *status_r,
		 const char **reason_r);
void sipmsg_free(struct sipmsg **mp);

/* Which recorded header a trimmed header name is (full or compact form). */
enum sipmsg_hdr sipmsg_hdr_identify(const struct sip_str *n);

/* Method name -> enum (case-sensitive, as RFC 3261 requires). */
enum sip_method sipmsg_method_from(const char *name, size_t len);

/* Raw values of a header (full and compact name), split at top-level commas when
 * split_commas; folded lines unfolded into the returned ranges' bounds (the bytes are not
 * copied; each value is trimmed). Returns the number found, at most max. */
size_t sipmsg_header_values(const struct sipmsg *m, const char *name, const char *compact,
			    bool split_commas, struct sip_str *out, size_t max);

/* What matches a request to its server transaction (RFC 3261 §17.2.3), read straight from
 * the bytes; the strings point into them. */
struct sipmsg_tsx_id {
	struct sip_str method; /* as in the request line */
	struct sip_str branch; /* top Via branch, with the magic cookie */
	struct sip_str host;   /* top Via sent-by host, brackets stripped */
	uint16_t port;	       /* 0 = absent */
};

/* Read the transaction id of a request from its raw bytes without parsing the message,
 * so a retransmission can meet its transaction at a fraction of a full parse. Only the
 * plain shapes are read: a request line, then a top Via in its usual form (no folding,
 * quoting or spaces inside its parameters) whose branch carries the magic cookie.
 * Returns true with *id filled, or false for anything else (a response, ACK, an RFC 2543
 * branch, an unusual Via): the caller parses the message in full, which decides. */
bool sipmsg_peek_tsx_id(const char *buf, size_t len, struct sipmsg_tsx_id *id);

/* Iterates over the raw values of header id in message order (the whole value of each
 * header line, trimmed, not split at commas). *pos starts at 0. Returns false at the end. */
bool sipmsg_hdr_next(const struct sipmsg *m, enum sipmsg_hdr id, size_t *pos,
		     struct sip_str *value);

/* sipmsg_header_values() for a recorded header, by id (no name to compare). */
size_t sipmsg_hdr_values(const struct sipmsg *m, enum sipmsg_hdr id, bool split_commas,
			 struct sip_str *out, size_t max);

/* Walks the raw header lines of buf (a whole message; the start line is skipped) in order,
 * up to the blank line. *pos starts at 0. name and value are trimmed (value may span folded
 * lines); line (may be NULL) is the whole raw line with its continuations, without the
 * final CRLF. Returns false at the end. */
bool sipmsg_raw_header_next(const char *buf, size_t len, size_t *pos, struct sip_str *name,
			    struct sip_str *value, struct sip_str *line);
/* Next element of a raw header value split at top-level commas (outside quotes and <>),
 * trimmed; empty elements are returned too. *pos starts at 0. */
bool sipmsg_list_next(const struct sip_str *v, size_t *pos, struct sip_str *elem);

/* Parameter value of a raw ";a=b;c" list (case-insensitive name); anything before the
 * first ';' is skipped, so a whole header value may be passed. Returns true when the
 * parameter is present; *val is the raw value (quotes kept), empty for a flag parameter,
 * and then val->p points just after the name. */
bool sipmsg_param(const struct sip_str *params, const char *name, struct sip_str *val);


#endif
