"""The shared base that knows no app: the database runner, the snapshot cache, the command base."""
