-- Schema 10 is another branch's migration (being merged separately); this no-op holds its
-- number so that 0011 applies in order here. Drop this file when that branch's 0010 lands.
SELECT 1;
