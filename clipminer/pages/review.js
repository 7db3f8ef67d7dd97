'use strict';
const cfg = JSON.parse(document.getElementById('config').textContent);
const $ = (id) => document.getElementById(id);
const players = [$('player-a'), $('player-b')];
let front = 0;
let labels = cfg.labels;
let list = [];
let cursor = null;
let exhausted = false;
let fetching = null;
let generation = 0;
let skipped = 0;
let reviewed = 0;
let digits = '';
let chain = Promise.resolve();
let inflight = 0;

function text(el, value) { el.textContent = value == null ? '' : String(value); }
function fmt(x) { return x == null ? '' : Number(x).toFixed(2); }
function say(message) { text($('message'), message); }
function busy(delta) { inflight += delta; document.body.dataset.inflight = String(inflight); }

function filterParams() {
  const p = new URLSearchParams();
  for (const o of $('f-label').selectedOptions) p.append('label', o.value);
  if ($('f-min').value !== '') p.set('min_score', $('f-min').value);
  if ($('f-max').value !== '') p.set('max_score', $('f-max').value);
  p.set('all', $('f-all').value);
  return p;
}

async function call(url, body) {
  busy(1);
  try {
    const init = body === undefined ? {} : {method: 'POST', body: JSON.stringify(body),
      headers: {'Content-Type': 'application/json', 'X-Clipminer-Token': cfg.token}};
    const r = await fetch(url, init);
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  } finally { busy(-1); }
}

function more() {
  if (exhausted) return Promise.resolve();
  if (fetching) return fetching;
  const gen = generation;
  const p = filterParams();
  p.set('limit', '20');
  if (cursor) p.set('after', cursor);
  fetching = call('/api/queue?' + p).then((data) => {
    if (gen !== generation) return;
    for (const e of data.clips) if (!list.some((x) => x.key === e.key)) list.push(e);
    if (data.clips.length) cursor = data.clips[data.clips.length - 1].key;
    exhausted = !data.more;
  }, (err) => say('cannot load clips: ' + err.message)).finally(() => { fetching = null; });
  return fetching;
}

function load(video, e) {
  if (video.dataset.key === (e ? e.key : '')) return;
  video.dataset.key = e ? e.key : '';
  if (e && e.url) { video.src = e.url; video.load(); }
  else { video.removeAttribute('src'); video.load(); }
}

function render(e) {
  $('done').classList.add('hidden');
  const back = players[1 - front];
  if (back.dataset.key === e.key) front = 1 - front;
  const shown = players[front], hidden = players[1 - front];
  load(shown, e);
  shown.classList.remove('hidden'); shown.controls = true; shown.autoplay = true;
  hidden.classList.add('hidden'); hidden.controls = false; hidden.autoplay = false;
  hidden.pause();
  shown.play().catch(() => {});
  text($('c-video'), e.video + ' #' + e.clip_id);
  let range = fmt(e.time_start) + '\u2013' + fmt(e.time_end) + ' s';
  if (e.clip_start != null && e.clip_end != null &&
      (Math.abs(e.clip_start - e.time_start) > 0.01 || Math.abs(e.clip_end - e.time_end) > 0.01))
    range += ' (file ' + fmt(e.clip_start) + '\u2013' + fmt(e.clip_end) + ' s)';
  if (!e.url) range += ' (no clip file)';
  text($('c-range'), range);
  const v = e.verdict;
  let verdict = v.status + (v.label ? ' as ' + v.label : '') + ', ' + v.votes + ' vote(s)';
  if (e.my_vote) verdict += '; mine: ' + e.my_vote.action +
    (e.my_vote.action === 'relabel' ? ' ' + e.my_vote.label : '');
  text($('c-verdict'), verdict);
  $('c-verdict').className = 'verdict-' + v.status;
  text($('c-image-label'), e.image_label);
  text($('c-image-score'), 'score ' + fmt(e.image_score));
  text($('c-video-label'), e.video_label == null ? '(no video model)' : e.video_label);
  text($('c-video-score'), e.video_score == null ? '' : 'score ' + fmt(e.video_score));
  const top = $('top5');
  top.replaceChildren();
  for (const [label, p] of e.top5) {
    const li = document.createElement('li');
    const name = document.createElement('span'); text(name, label);
    const value = document.createElement('span'); text(value, fmt(p));
    const bar = document.createElement('span'); bar.className = 'bar';
    bar.style.width = Math.max(0, Math.min(100, p * 100)) + '%';
    li.append(name, value, bar); top.append(li);
  }
  for (const li of $('labels').children) {
    li.classList.toggle('current', li.dataset.label === e.label);
  }
  text($('h-position'), reviewed + ' reviewed, ' + skipped + ' skipped here');
}

function done() {
  for (const p of players) { p.pause(); p.classList.add('hidden'); }
  $('done').classList.remove('hidden');
  text($('done-note'), skipped ? skipped + ' skipped: press n to go round again' : '');
  for (const id of ['c-video', 'c-range', 'c-verdict', 'c-image-label', 'c-image-score',
    'c-video-label', 'c-video-score']) text($(id), '');
  $('top5').replaceChildren();
  document.body.dataset.state = 'done';
}

async function show() {
  if (!list.length && !exhausted) await more();
  const e = list[0];
  if (!e) { done(); return; }
  document.body.dataset.state = 'clip';
  document.body.dataset.clip = e.key;
  render(e);
  load(players[1 - front], list[1]);
  if (list.length < 5 && !exhausted) more().then(() => {
    if (list[0] === e) load(players[1 - front], list[1]);
  });
}

function restart() {
  generation += 1; list = []; cursor = null; exhausted = false; fetching = null; skipped = 0;
  show();
}

function vote(action, label) {
  const e = list[0];
  if (!e) return;
  list.shift(); reviewed += 1; show();
  const body = {clip: e.key, action: action, label: label,
                time_start: e.time_start, time_end: e.time_end};
  chain = chain.then(() => call('/api/vote', body))
    .then(() => { say(''); refresh(); },
      (err) => { say('vote not saved: ' + err.message); list.unshift(e); reviewed -= 1; show(); });
}

function undo() {
  chain = chain.then(() => call('/api/undo', {})).then((data) => {
    if (!data.clip) { say(data.undone ? 'undone (clip no longer shown)' : 'nothing to undo'); }
    else {
      list = list.filter((x) => x.key !== data.clip.key);
      list.unshift(data.clip); reviewed = Math.max(0, reviewed - 1); say('undone'); show();
    }
    refresh();
  }, (err) => say('undo failed: ' + err.message));
}

function skip() {
  if (!list.length) { if (exhausted) restart(); return; }
  list.shift(); skipped += 1; show();
}

function relabel(n) {
  const label = labels[n - 1];
  if (label === undefined) { say('no label ' + n); return; }
  vote('relabel', label);
}

function typeDigit(d) {
  digits = digits === '0' ? d : digits + d;
  const n = parseInt(digits, 10);
  if (n > 0 && n * 10 > labels.length) { digits = ''; relabel(n); }
  text($('digits'), digits ? 'label ' + digits + '\u2026' : '');
}

function renderLabels() {
  const ol = $('labels');
  ol.replaceChildren();
  labels.forEach((label, i) => {
    const li = document.createElement('li');
    li.dataset.label = label;
    const n = document.createElement('span'); n.className = 'n'; text(n, i + 1);
    li.append(n, document.createTextNode(label));
    li.addEventListener('click', () => relabel(i + 1));
    ol.append(li);
  });
  const select = $('f-label');
  const chosen = new Set([...select.selectedOptions].map((o) => o.value));
  if (!select.options.length) for (const l of cfg.filters.labels) chosen.add(l);
  select.replaceChildren();
  for (const label of labels) {
    const o = document.createElement('option'); o.value = label; text(o, label);
    o.selected = chosen.has(label); select.append(o);
  }
}

function refresh() {
  return call('/api/progress').then((data) => {
    if (JSON.stringify(data.labels) !== JSON.stringify(labels)) {
      labels = data.labels; renderLabels();
    }
    const body = $('progress');
    body.replaceChildren();
    const keys = ['total', 'accepted', 'relabelled', 'rejected', 'disputed', 'pending', 'mine'];
    const sums = {label: 'all'};
    for (const row of data.rows) {
      const tr = document.createElement('tr');
      for (const k of ['label', ...keys]) {
        const td = document.createElement('td'); text(td, row[k]); tr.append(td);
        if (k !== 'label') sums[k] = (sums[k] || 0) + row[k];
      }
      body.append(tr);
    }
    const tr = document.createElement('tr'); tr.className = 'total';
    for (const k of ['label', ...keys]) {
      const td = document.createElement('td'); text(td, sums[k] || 0); tr.append(td);
    }
    body.append(tr);
  }, (err) => say('cannot load progress: ' + err.message));
}

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName)) {
    if (ev.key === 'Escape' || ev.key === 'Enter') t.blur();
    return;
  }
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  let handled = true;
  if (/^[0-9]$/.test(k)) typeDigit(k);
  else if (k === 'Enter' && digits) {
    const n = parseInt(digits, 10); digits = ''; text($('digits'), ''); relabel(n);
  } else if (k === 'Escape') { digits = ''; text($('digits'), ''); }
  else if (k === 'a') vote('accept', null);
  else if (k === 'r') vote('reject', null);
  else if (k === 'u') undo();
  else if (k === 'n' || k === ' ') skip();
  else handled = false;
  if (handled) ev.preventDefault();
});

for (const [id, fn] of [['b-accept', () => vote('accept', null)],
  ['b-reject', () => vote('reject', null)], ['b-undo', undo], ['b-skip', skip]]) {
  $(id).addEventListener('click', (ev) => { ev.currentTarget.blur(); fn(); });
}
for (const id of ['f-label', 'f-min', 'f-max', 'f-all']) {
  $(id).addEventListener('change', () => restart());
}

text($('h-out'), cfg.out);
text($('h-reviewer'), cfg.reviewer);
text($('h-rule'), cfg.rule.votes > 1 ?
  'rule: ' + cfg.rule.agree + ' of ' + cfg.rule.votes + ' votes agree' : 'rule: one vote decides');
if (cfg.filters.min_score != null) $('f-min').value = cfg.filters.min_score;
if (cfg.filters.max_score != null) $('f-max').value = cfg.filters.max_score;
$('f-all').value = cfg.filters.include_voted ? '1' : '0';
renderLabels();
refresh();
show();
