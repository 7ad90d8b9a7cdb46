\set id random(1, 1000)
UPDATE floor_spread SET n = n + 1 WHERE id = :id;
