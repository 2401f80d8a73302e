/*
 * test_device_choice.c: which GPU a rank uses (comm.h
 * bt_comm_pick_device), checked on CPU. One visible GPU per rank (Slurm
 * --gpus-per-task=1) is device 0 for every local rank; a process that
 * sees the whole node's 8 GPUs takes its local rank; nothing visible: -1.
 * The launchers' local-rank variables (bt_comm_launcher_local_rank, the
 * cross-check of MPI's shared-memory split at init) are read in order,
 * and junk in them is ignored.
 */
#include "comm/comm.h"
#include "tests/check.h"

#include <stdlib.h>
#include <string.h>

static void check_launcher_env(void) {
  static const char *azAll[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                "MPI_LOCALRANKID",
                                "MV2_COMM_WORLD_LOCAL_RANK"};
  for (int i = 0; i < 4; i++) unsetenv(azAll[i]);
  const char *zVar = "untouched";
  CHECK(bt_comm_launcher_local_rank(&zVar) == -1 &&
            !strcmp(zVar, "untouched"),
        "no launcher variable: %s", zVar);
  /* each launcher alone: mpirun (Open MPI), srun, hydra, MVAPICH2 */
  for (int i = 0; i < 4; i++) {
    setenv(azAll[i], "3", 1);
    int v = bt_comm_launcher_local_rank(&zVar);
    CHECK(v == 3 && !strcmp(zVar, azAll[i]), "%s=3: %d from %s", azAll[i], v,
          zVar);
    /* srun --gpus-per-task=1: one visible GPU, device 0 at local rank 3 */
    CHECK(bt_comm_pick_device(v, 1) == 0, "%s=3, 1 visible", azAll[i]);
    CHECK(bt_comm_pick_device(v, 8) == 3, "%s=3, 8 visible", azAll[i]);
    unsetenv(azAll[i]);
  }
  /* mpirun under Slurm sets both: Open MPI's own comes first */
  setenv("SLURM_LOCALID", "0", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);
  CHECK(bt_comm_launcher_local_rank(&zVar) == 5 &&
            !strcmp(zVar, "OMPI_COMM_WORLD_LOCAL_RANK"),
        "both set: %s", zVar);
  /* junk is not a local rank: the next variable answers */
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5x", 1);
  CHECK(bt_comm_launcher_local_rank(&zVar) == 0 &&
            !strcmp(zVar, "SLURM_LOCALID"),
        "junk then SLURM_LOCALID=0: %s", zVar);
  setenv("SLURM_LOCALID", "-1", 1);
  CHECK(bt_comm_launcher_local_rank(NULL) == -1, "only junk");
  for (int i = 0; i < 4; i++) unsetenv(azAll[i]);
}

int main(void) {
  check_launcher_env();
  for (int lr = 0; lr < 8; lr++) {
    CHECK(bt_comm_pick_device(lr, 1) == 0, "local rank %d, 1 visible: %d", lr,
          bt_comm_pick_device(lr, 1));
    CHECK(bt_comm_pick_device(lr, 8) == lr, "local rank %d, 8 visible: %d", lr,
          bt_comm_pick_device(lr, 8));
    CHECK(bt_comm_pick_device(lr, 0) == -1, "local rank %d, none: %d", lr,
          bt_comm_pick_device(lr, 0));
  }
  /* More ranks than GPUs (a shared node): round robin. */
  CHECK(bt_comm_pick_device(5, 4) == 1, "5 on 4: %d", bt_comm_pick_device(5, 4));
  CHECK(bt_comm_pick_device(3, 2) == 1, "3 on 2: %d", bt_comm_pick_device(3, 2));
  return CHECK_DONE();
}
