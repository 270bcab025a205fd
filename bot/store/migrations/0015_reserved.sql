-- Schema 15: reserved for another branch's migration (numbers are handed out in turns);
-- this placeholder only keeps 1..N contiguous until that branch is merged, and is dropped
-- then in favour of the real 0015.
SELECT 1;
