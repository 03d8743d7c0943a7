"""python -m memcollab_eval.build: build a memory bank from several models' trajectories."""

from memcollab_eval.build.cli import main

if __name__ == "__main__":
    main()
