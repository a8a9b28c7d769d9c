-- tag changes (vip fires the vip automation)
\set n random(1, :users)
\set tag random(1, 3)
\set add random(0, 2)
SELECT stress.tag(:n, :tag, :add > 0);
