/* Comparisons of RFC 3261 text that are not worth inlining. */
#include "util/text.h"

#include <string.h>

bool text_mem_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (text_to_lower(a[i]) != text_to_lower(b[i]))
			return false;
	return true;
}
