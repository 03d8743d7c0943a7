"""python -m memcollab_eval.construct: the build command (also python -m memcollab_eval.build)."""

from memcollab_eval.construct.cli import main

if __name__ == "__main__":
    main()
