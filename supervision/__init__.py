"""The rules of supervision that are not geometry: who may approve leave, what a monitoring
order must satisfy, what lost contact leads to. Pure functions over plain data, so the API,
the scheduler and the tests share one reading of the law."""
