# meisa: PGXS build. C sources by concern in src/, install and upgrade
# scripts meisa--*.sql, pg_regress tests in sql/ + expected/, isolation tests
# in specs/ + expected/.

EXTENSION   = meisa
MODULE_big  = meisa
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA        = $(sort $(wildcard meisa--*.sql))

REGRESS     = $(sort $(patsubst sql/%.sql,%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=test/regress.conf
ISOLATION   = $(sort $(patsubst specs/%.spec,%,$(wildcard specs/*.spec)))
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src -isystem $(includedir_server) $(shell curl-config --cflags 2>/dev/null)
PG_CFLAGS   = -Wall -Wextra -Werror
SHLIB_LINK  = $(shell curl-config --libs 2>/dev/null || echo -lcurl)
EXTRA_CLEAN = results regression.diffs regression.out tmp_check tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
