#!/usr/bin/env bash
# bench/render.sh: render throughput of meisa.render on a realistic ~5 KB HTML
# email (escaped variables, dotted names, sections, an inverted section, a list
# of 10 order lines, a footer partial), on a private cluster (port 26420,
# data under /tmp) built from the devcheck prefix.  Prints renders per second
# (in-backend SQL loop, and pgbench round trips next to a plain SELECT of the
# same row as the PostgreSQL baseline) and, with valgrind, instructions per
# render (repeatable on a busy machine).
# Usage: bash scripts/devcheck.sh 00_install && bash bench/render.sh [seconds]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
port=26420
name=$(echo "$src" | tr '/' '_')
bin=/tmp/meisa-dev/$name/pg/usr/lib/postgresql/15/bin
[ -x "$bin/postgres" ] || { echo "run scripts/devcheck.sh first (no $bin)" >&2; exit 1; }
data=/tmp/meisa-bench-render
work=$(mktemp -d /tmp/meisa-bench-render-work.XXXXXX)
chown postgres: "$work"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$data" "$work"; }
trap cleanup EXIT
rm -rf "$data"
as_pg "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
as_pg "$bin/pg_ctl" -D "$data" -l "$work/log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c shared_buffers=64MB" start >/dev/null
psql() { as_pg "$bin/psql" -h 127.0.0.1 -p $port -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE bench"
psql -d bench <<'SQL'
CREATE EXTENSION meisa;
CREATE TABLE bench_email (html text, data jsonb, partials jsonb);
INSERT INTO bench_email VALUES ($tmpl$<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Your order {{data.order.number}} is on its way</title>
  <style>
    body { margin: 0; padding: 0; background: #f4f5f7; font-family: Helvetica, Arial, sans-serif; color: #1f2933; }
    .wrapper { width: 100%; background: #f4f5f7; padding: 24px 0; }
    .card { max-width: 600px; margin: 0 auto; background: #ffffff; border-radius: 8px; overflow: hidden; }
    .header { background: #3b5bdb; color: #ffffff; padding: 24px 32px; font-size: 22px; font-weight: bold; }
    .content { padding: 24px 32px; font-size: 15px; line-height: 1.6; }
    table.items { width: 100%; border-collapse: collapse; margin: 16px 0; }
    table.items th { text-align: left; font-size: 12px; text-transform: uppercase; color: #7b8794; border-bottom: 1px solid #e4e7eb; padding: 8px 0; }
    table.items td { padding: 10px 0; border-bottom: 1px solid #f0f2f5; vertical-align: top; }
    .price { text-align: right; white-space: nowrap; }
    .total td { font-weight: bold; border-bottom: none; }
    .button { display: inline-block; background: #3b5bdb; color: #ffffff !important; text-decoration: none; padding: 12px 24px; border-radius: 6px; }
    .muted { color: #7b8794; font-size: 12px; }
    .footer { padding: 16px 32px 32px; }
    .recs { width: 100%; border-collapse: collapse; margin: 8px 0 16px; }
    .recs td { width: 33%; padding: 8px; text-align: center; vertical-align: top; font-size: 13px; }
    .recs img { width: 100%; max-width: 160px; border-radius: 4px; display: block; margin: 0 auto 8px; }
    @media only screen and (max-width: 620px) {
      .card { border-radius: 0; }
      .content, .footer { padding-left: 16px !important; padding-right: 16px !important; }
      .recs td { display: block; width: 100% !important; }
    }
  </style>
</head>
<body>
<div class="wrapper">
  <div class="card">
    <div class="header">{{data.shop.name}}</div>
    <div class="content">
      <p>Hi {{#first_name}}{{first_name}}{{/first_name}}{{^first_name}}there{{/first_name}},</p>
      <p>Good news: your order <strong>#{{data.order.number}}</strong> placed on {{data.order.date}} has shipped
         and should arrive by <strong>{{data.order.eta}}</strong>.</p>
      {{#data.order.tracking_url}}
      <p><a class="button" href="{{data.order.tracking_url}}">Track your parcel</a></p>
      {{/data.order.tracking_url}}
      <table class="items" role="presentation">
        <tr><th>Item</th><th>Qty</th><th class="price">Price</th></tr>
        {{#data.order.items}}
        <tr>
          <td><strong>{{name}}</strong>{{#variant}}<br><span class="muted">{{variant}}</span>{{/variant}}
            {{#gift}}<br><span class="muted">Gift wrapped for {{gift.to}}</span>{{/gift}}</td>
          <td>{{qty}}</td>
          <td class="price">{{price}} {{data.order.currency}}</td>
        </tr>
        {{/data.order.items}}
        <tr class="total"><td>Total</td><td></td><td class="price">{{data.order.total}} {{data.order.currency}}</td></tr>
      </table>
      <p>Shipping to:<br>
        {{data.order.address.name}}<br>
        {{data.order.address.line1}}<br>
        {{#data.order.address.line2}}{{data.order.address.line2}}<br>{{/data.order.address.line2}}
        {{data.order.address.postcode}} {{data.order.address.city}}<br>
        {{data.order.address.country}}</p>
      {{#custom_fields.loyalty_points}}
      <p>You earned <strong>{{data.order.points}}</strong> points with this order and now have
         {{custom_fields.loyalty_points}} points on your {{custom_fields.plan}} account.</p>
      {{/custom_fields.loyalty_points}}
      {{^custom_fields.loyalty_points}}
      <p>Join our loyalty programme and earn points on every order.</p>
      {{/custom_fields.loyalty_points}}
      {{#data.recommendations.0}}
      <h3>You might also like</h3>
      <table class="recs" role="presentation">
        <tr>
        {{#data.recommendations}}
          <td><a href="{{url}}"><img src="{{image}}" alt="{{name}}"></a>
            <a href="{{url}}">{{name}}</a><br><span class="muted">{{price}} {{data.order.currency}}</span></td>
        {{/data.recommendations}}
        </tr>
      </table>
      {{/data.recommendations.0}}
      <p>Questions about your order? Just reply to this email or visit our help centre, we are happy to help.</p>
      <p>Thanks for shopping with us,<br>The {{data.shop.name}} team</p>
    </div>
    {{> footer}}
  </div>
</div>
</body>
</html>
$tmpl$,
$data${"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
 "custom_fields": {"plan": "pro", "loyalty_points": 1250, "timezone": "Europe/London"},
 "tags": ["customer", "newsletter"],
 "unsubscribe_url": "https://example.com/u/eyJjIjo0Mn0.c2lnbmF0dXJl?x=1&y=2",
 "data": {"shop": {"name": "Acme & Sons", "address": "1 Market St, London"},
  "order": {"number": "A-10042", "date": "2026-11-20", "eta": "2026-11-24", "currency": "EUR",
   "tracking_url": "https://track.example.com/?id=XY123&lang=en", "total": 312.40, "points": 31,
   "address": {"name": "Ada Lovelace", "line1": "12 St James's Square", "line2": "Flat <3>",
               "postcode": "SW1Y 4JH", "city": "London", "country": "United Kingdom"},
   "items": [
    {"name": "Analytical Engine T-shirt", "variant": "Size M, navy", "qty": 2, "price": 25.00},
    {"name": "Difference Engine poster", "variant": "A2", "qty": 1, "price": 18.50},
    {"name": "Notebook \"Note G\"", "qty": 3, "price": 9.90},
    {"name": "Punch-card coasters", "variant": "Set of 6", "qty": 1, "price": 14.00},
    {"name": "Brass gear bookmark", "qty": 2, "price": 7.25, "gift": {"to": "Charles"}},
    {"name": "Mug <Hello, World>", "variant": "350 ml", "qty": 1, "price": 12.00},
    {"name": "Sticker pack", "qty": 5, "price": 3.00},
    {"name": "Hoodie", "variant": "Size L, grey", "qty": 1, "price": 59.00},
    {"name": "Tote bag", "qty": 1, "price": 15.00},
    {"name": "Gift card", "variant": "Digital", "qty": 1, "price": 50.00, "gift": {"to": "Mary & Sam"}}]},
  "recommendations": [
    {"name": "Lovelace biography", "price": 22.00, "url": "https://shop.example.com/p/1?utm_source=email&utm_medium=order", "image": "https://cdn.example.com/p/1.jpg"},
    {"name": "Babbage desk lamp", "price": 49.00, "url": "https://shop.example.com/p/2?utm_source=email&utm_medium=order", "image": "https://cdn.example.com/p/2.jpg"},
    {"name": "Bernoulli puzzle", "price": 16.50, "url": "https://shop.example.com/p/3?utm_source=email&utm_medium=order", "image": "https://cdn.example.com/p/3.jpg"}]}}$data$,
$p${"footer": "<div class=\"footer\">\n  <p class=\"muted\">{{data.shop.name}}, {{data.shop.address}}.<br>\n  You receive this email because you have an account with us ({{email}}).<br>\n  <a href=\"{{unsubscribe_url}}\">Unsubscribe</a> from marketing emails.</p>\n</div>\n"}$p$);
SQL
psql -d bench -At -c "SELECT 'template: ' || octet_length(html) || ' bytes, rendered: ' || octet_length(meisa.render(html, data, partials)) || ' bytes' FROM bench_email"
n=20000
best=0
for run in 1 2 3; do
  t=$(psql -d bench -At <<SQL
\timing on
SELECT count(*) FROM generate_series(1, $n) g, bench_email
 WHERE meisa.render(CASE WHEN g > 0 THEN html END, data, partials) IS NOT NULL;
SQL
  )
  ms=$(echo "$t" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
  rate=$(awk -v n=$n -v ms="$ms" 'BEGIN{printf "%.0f", n/(ms/1000)}')
  echo "run $run: $n renders in one statement: ${ms} ms = $rate renders/s (1 backend)"
  [ "$rate" -gt "$best" ] && best=$rate
done
echo "best: $best renders/s in one backend ($(awk -v r=$best 'BEGIN{printf "%.1f", 1e6/r}') us per render)"
echo 'SELECT meisa.render(html, data, partials) FROM bench_email;' > "$work/render.sql"
echo 'SELECT html, data, partials FROM bench_email;' > "$work/plain.sql"
tps() { as_pg "$bin/pgbench" -h 127.0.0.1 -p $port -n -M prepared -c 2 -j 2 -T "$secs" -f "$1" bench 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }
r=$(tps "$work/render.sql"); p=$(tps "$work/plain.sql")
echo "pgbench -c 2 -T $secs, meisa.render: ${r%.*} renders/s; plain SELECT of the same row: ${p%.*} tps; ratio $(awk -v a="$r" -v b="$p" 'BEGIN{printf "%.2f", a/b}')"

# Instructions per render (repeatable on a busy machine): the same statement
# with 500 and 2,500 renders in a single-user backend under callgrind; the
# difference divided by 2,000.  Skipped without valgrind or with CALLGRIND=0.
if [ "${CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
  as_pg "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null
  declare -A ir
  for k in 500 2500; do
    echo "SELECT count(*) FROM generate_series(1, $k) g, bench_email WHERE meisa.render(CASE WHEN g > 0 THEN html END, data, partials) IS NOT NULL;" > "$work/cg.sql"
    ir[$k]=$(cd "$work" && as_pg valgrind --tool=callgrind --callgrind-out-file="$work/cg.$k" \
             "$bin/postgres" --single -D "$data" bench < "$work/cg.sql" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  done
  echo "callgrind: $(( (${ir[2500]} - ${ir[500]}) / 2000 )) instructions per render (including detoasting the template and data)"
fi
