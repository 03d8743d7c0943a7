"""python -m memcollab_eval.leaderboard PATH... [--out DIR]: tables over finished runs."""

from memcollab_eval.leaderboard.render import main

if __name__ == "__main__":
    raise SystemExit(main())
