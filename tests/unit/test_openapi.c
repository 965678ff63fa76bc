/* docs/openapi.yaml and the server's route table agree: the same paths and
 * methods, and the same states (x-wisp-states) for each. The YAML is read
 * line by line in the fixed layout the file keeps (paths at two spaces,
 * methods at four, x-wisp-states on one line). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vmm/api.h"

struct op {
	char method[8];
	char path[128];
	unsigned states;
	bool matched;
};

static unsigned parse_states(const char *line)
{
	unsigned s = 0;
	if (strstr(line, "Not started"))
		s |= 1u << VM_NOT_STARTED;
	if (strstr(line, "Running"))
		s |= 1u << VM_RUNNING;
	if (strstr(line, "Paused"))
		s |= 1u << VM_PAUSED;
	return s;
}

static int load_ops(struct op *ops, int max)
{
	FILE *f = fopen("docs/openapi.yaml", "r");
	cr_assert_not_null(f, "docs/openapi.yaml not found (run from the repository root)");
	char line[512], path[128] = "";
	int n = 0;
	bool in_paths = false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "paths:") == 0) {
			in_paths = true;
			continue;
		}
		if (line[0] != ' ' && line[0] != '\0')
			in_paths = false;
		if (!in_paths)
			continue;
		if (line[0] == ' ' && line[1] == ' ' && line[2] == '/') {
			snprintf(path, sizeof(path), "%.*s", (int)(strlen(line) - 3), line + 2);
			continue;
		}
		static const char *const methods[] = { "get", "put", "patch", "post", "delete" };
		for (size_t i = 0; i < 5; i++) {
			char want[32];
			snprintf(want, sizeof(want), "    %s:", methods[i]);
			if (strcmp(line, want) == 0) {
				cr_assert_lt(n, max);
				for (size_t k = 0; k <= strlen(methods[i]); k++)
					ops[n].method[k] = (char)(methods[i][k] >= 'a' ?
								   methods[i][k] - 32 : methods[i][k]);
				snprintf(ops[n].path, sizeof(ops[n].path), "%s", path);
				n++;
			}
		}
		if (n > 0 && strstr(line, "x-wisp-states:"))
			ops[n - 1].states = parse_states(line);
	}
	fclose(f);
	return n;
}

Test(openapi, routes_and_description_agree)
{
	struct op ops[64] = { 0 };
	int n = load_ops(ops, 64);
	cr_assert_gt(n, 10, "too few operations parsed from docs/openapi.yaml");
	size_t routes = 0;
	for (size_t i = 0; api_route(i); i++, routes++) {
		const struct api_route_info *r = api_route(i);
		bool found = false;
		for (int k = 0; k < n; k++) {
			if (strcmp(ops[k].method, r->method) == 0 && strcmp(ops[k].path, r->path) == 0) {
				found = true;
				ops[k].matched = true;
				cr_expect_eq(ops[k].states, r->states,
					     "%s %s: x-wisp-states 0x%x, server 0x%x", r->method,
					     r->path, ops[k].states, r->states);
			}
		}
		cr_expect(found, "the server routes %s %s, the description lacks it", r->method,
			  r->path);
	}
	for (int k = 0; k < n; k++)
		cr_expect(ops[k].matched, "the description has %s %s, the server lacks it",
			  ops[k].method, ops[k].path);
	cr_expect_eq((size_t)n, routes);
}
