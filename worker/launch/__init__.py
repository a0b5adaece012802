"""Running a job as several processes: devices of this worker, the torchrun process group, Slurm."""
