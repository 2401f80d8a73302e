/*
 * test_cli.c: bt_cli (base/cli.h), the getopt_long wrapper every `baton`
 * subcommand parses with.
 *   - options and positionals come back in command-line order, argv is
 *     not permuted, "--" makes the rest positional;
 *   - long and short options, with "--opt=v", "--opt v", "-ov", "-o v";
 *   - unknown long/short options, a missing value and a value given to a
 *     flag return BT_CLI_ERROR with the option named in the message;
 *   - a second parse in the same process starts from scratch (getopt's
 *     global state is reset), even after one that stopped mid-cluster.
 */
#include <string.h>

#include "base/cli.h"
#include "base/util.h"
#include "tests/check.h"

static const struct option g_aOpt[] = {{"out", required_argument, 0, 'o'},
                                       {"flag", no_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};

/* Parses argv and writes a trace "o=X f A=Y ..." into zOut; returns the
 * last code (-1 at a clean end, BT_CLI_ERROR on a bad option). */
static int parse(int argc, char **argv, char *zOut, size_t nOut) {
  bt_cli c;
  bt_cli_init(&c, "test", argc, argv, "ho:f", g_aOpt, NULL);
  size_t n = 0;
  zOut[0] = 0;
  int ch;
  while ((ch = bt_cli_next(&c)) != -1 && ch != BT_CLI_ERROR) {
    if (ch == BT_CLI_ARG)
      n += (size_t)snprintf(zOut + n, nOut - n, "A=%s ", c.zArg);
    else if (ch == 'o')
      n += (size_t)snprintf(zOut + n, nOut - n, "o=%s ", c.zArg);
    else n += (size_t)snprintf(zOut + n, nOut - n, "%c ", ch);
  }
  return ch;
}

#define ARGV(...) ((char *[]){"test", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"test", __VA_ARGS__}) / sizeof(char *)))
#define RUN(zWant, ...)                                                        \
  do {                                                                         \
    char **av = ARGV(__VA_ARGS__);                                             \
    char z[512];                                                               \
    int rc = parse(ARGC(__VA_ARGS__), av, z, sizeof z);                        \
    CHECK(rc == -1 && strcmp(z, zWant) == 0, "got '%s' (rc %d), want '%s'",   \
          z, rc, zWant);                                                       \
  } while (0)
#define BAD(zMsg, ...)                                                         \
  do {                                                                         \
    char **av = ARGV(__VA_ARGS__);                                             \
    char z[512];                                                               \
    int rc = parse(ARGC(__VA_ARGS__), av, z, sizeof z);                        \
    CHECK(rc == BT_CLI_ERROR && strstr(bt_err_msg(), zMsg),                    \
          "rc %d, message '%s', want '%s'", rc, bt_err_msg(), zMsg);           \
  } while (0)

static void test_order(void) {
  RUN("A=x o=y A=z ", "x", "--out", "y", "z");
  RUN("o=y A=x ", "--out=y", "x");
  RUN("o=y f A=x ", "-oy", "-f", "x");
  RUN("f o=y ", "-fo", "y");
  RUN("A=x A=--out A=-f ", "x", "--", "--out", "-f");
  RUN("f ", "--flag", "--");
  RUN("A=- ", "-");
  RUN("o=-f ", "--out", "-f"); /* a value may start with '-' */

  char *av[] = {"test", "a", "--flag", "b", NULL};
  char z[128];
  parse(4, av, z, sizeof z);
  CHECK(!strcmp(av[1], "a") && !strcmp(av[2], "--flag") && !strcmp(av[3], "b"),
        "argv was permuted: %s %s %s", av[1], av[2], av[3]);
}

static void test_errors(void) {
  BAD("unknown option '--frob'", "x", "--frob", "y");
  BAD("unknown option '--frob'", "--frob=3");
  BAD("unknown option '-x'", "-x");
  BAD("unknown option '-x'", "-fx");
  BAD("option '--out' needs a value", "a", "--out");
  BAD("option '-o' needs a value", "-o");
  BAD("option '--flag' takes no value", "--flag=1");
  CHECK(strncmp(bt_err_msg(), "baton", 5) != 0, "message repeats the prefix");
}

/* A parse that stops inside a cluster ("-xf") must not leak into the next
 * one: bt_cli_init resets getopt. */
static void test_reset(void) {
  BAD("unknown option '-x'", "-xf", "a");
  RUN("f A=a ", "-f", "a");
  RUN("f A=a ", "-f", "a");
}

int main(void) {
  test_order();
  test_errors();
  test_reset();
  return CHECK_DONE();
}
