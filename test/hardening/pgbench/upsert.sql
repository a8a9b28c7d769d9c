-- meisa_upsert of an overlapping user: plan/posts changes fire automations
\set n random(1, :users)
\set plan random(1, 5)
\set posts random(0, 9)
\set ext random(0, 3)
SELECT stress.upsert(:n, :plan, :posts, :ext > 0);
