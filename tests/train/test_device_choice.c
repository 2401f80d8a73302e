/*
 * test_device_choice.c: which GPU a rank uses (comm.h
 * bt_comm_pick_device), checked on CPU. One visible GPU per rank (Slurm
 * --gpus-per-task=1) is device 0 for every local rank; a process that
 * sees the whole node's 8 GPUs takes its local rank; nothing visible: -1.
 */
#include "comm/comm.h"
#include "tests/check.h"

int main(void) {
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
