# credits: PostgreSQL extension (PGXS)
#
#   make test    install what is missing (Debian, as root), build, install,
#                start a throwaway cluster and run every test suite
#   make demo    same set-up, then walk through the product scenario in psql
#   make bench   benchmarks against a durable throwaway cluster, then the
#                router against 1, 2 and 4 shard servers (BENCH_ROUTER=0: not)
#
# The classic PGXS targets (all, install, installcheck, clean) work as usual
# once postgresql-server-dev is installed; PG_CONFIG picks the server.

EXTENSION  = credits
EXTVERSION = 1.1

MODULE_big = credits
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# installed for other extensions: the credit type only (credits.h is internal)
HEADERS_credits = src/credit.h

# $(EXTENSION)--1.0.sql is the frozen 1.0 install script (never edited);
# the current version's script is built from src/sql/, and every schema
# change since 1.0 is also in the update scripts $(EXTENSION)--X--Y.sql.
# The second extension, credits_router (the API over PL/Proxy partitions),
# installs with it: its control file and script go to the same extension
# directory as DATA (EXTENSION names credits alone, as the rules below use it).
# Its script is built from src/router/ around the credit type's own
# definitions (src/sql/010_credit.sql), which router and shards share.
ROUTER_SQL = src/router/010_header.sql src/sql/010_credit.sql src/router/020_api.sql
DATA = $(EXTENSION)--1.0.sql $(EXTENSION)--$(EXTVERSION).sql $(wildcard $(EXTENSION)--*--*.sql) \
       credits_router.control credits_router--$(EXTVERSION).sql
EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql credits_router--$(EXTVERSION).sql

# make installcheck (against a running server, PGHOST/PGPORT/PGUSER): the
# regression tests, the isolation specs and the pgTAP files
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=$(EXTENSION)
PGTAP_DB ?= credits_tap
EXTRA_CLEAN += output_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# PGXS is not installed yet: `make test` / `make demo` bootstrap it first.
all install installcheck:
	@echo "postgresql-server-dev is not installed: run 'make test' or 'make demo' (as root on Debian), or set PG_CONFIG" >&2
	@exit 1
endif

# every object depends on the shared headers (PGXS tracks no header dependencies)
$(OBJS): src/credits.h src/credit.h

# The install script is assembled from the ordered pieces under src/sql/.
$(EXTENSION)--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

credits_router--$(EXTVERSION).sql: $(ROUTER_SQL)
	cat $^ > $@

all: $(EXTENSION)--$(EXTVERSION).sql credits_router--$(EXTVERSION).sql

# pgTAP, as part of installcheck: every test/pgtap/*.sql in a fresh database
installcheck: installcheck-pgtap
.PHONY: installcheck-pgtap
installcheck-pgtap:
	dropdb --if-exists $(PGTAP_DB)
	createdb $(PGTAP_DB)
	psql -X -q -v ON_ERROR_STOP=1 -d $(PGTAP_DB) -c 'CREATE EXTENSION pgtap; CREATE EXTENSION $(EXTENSION);'
	pg_prove -d $(PGTAP_DB) $(sort $(wildcard test/pgtap/*.sql))
	dropdb $(PGTAP_DB)

.PHONY: test demo bench deps
deps:
	@bash scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@bash scripts/test.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@bash scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@bash bench/run.sh
	@if [ "$${BENCH_ROUTER:-1}" != 0 ]; then bash bench/router.sh; fi
