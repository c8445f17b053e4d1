# Sourced by the bench scripts: private redis-server and nginx (with the echo module) on
# free loopback ports, stopped by bench_stop_servers (install it as an EXIT trap).
#   /fast -> 200 "ok\n" at once      /slow -> 200 "ok\n" after 100 ms (a timer, non-blocking)
BENCH_RUN=${BENCH_RUN:-$(mktemp -d /tmp/workerd-bench-XXXXXX)}
chmod 755 "$BENCH_RUN"

bench_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bench_start_redis() {
  REDIS_PORT=$(bench_free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$BENCH_RUN" --logfile "$BENCH_RUN/redis.log" --maxclients 20000 --daemonize yes \
      --pidfile "$BENCH_RUN/redis.pid" >/dev/null
  for _ in $(seq 200); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
  echo "redis-server did not start" >&2; return 1
}

bench_start_nginx() {
  NGINX_PORT=$(bench_free_port)
  local p="$BENCH_RUN/nginx"; mkdir -p "$p/logs"
  cat > "$p/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile 30000;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $p/body; proxy_temp_path $p/proxy; fastcgi_temp_path $p/fcgi;
  uwsgi_temp_path $p/uwsgi; scgi_temp_path $p/scgi;
  keepalive_requests 1000000; keepalive_timeout 65;
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=16384 reuseport;
    default_type text/plain;
    location = /fast { return 200 "ok\n"; }
    location = /slow { echo_sleep 0.1; echo "ok"; }
  }
}
CONF
  nginx -p "$p" -c "$p/nginx.conf"
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$NGINX_PORT/fast" >/dev/null && return; sleep 0.05; done
  echo "nginx did not start" >&2; return 1
}

bench_stop_servers() {
  [ -s "$BENCH_RUN/redis.pid" ] && kill "$(cat "$BENCH_RUN/redis.pid")" 2>/dev/null
  [ -s "$BENCH_RUN/nginx/nginx.pid" ] && kill "$(cat "$BENCH_RUN/nginx/nginx.pid")" 2>/dev/null
  sleep 0.2
  rm -rf "$BENCH_RUN"
}
