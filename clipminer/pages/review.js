'use strict';
const cfg = JSON.parse(document.getElementById('config').textContent);
const $ = (id) => document.getElementById(id);
const players = [$('player-a'), $('player-b')];
const FRAME_SECONDS = 1 / 25;  // a frame step (the page does not know the clip's rate)
const SHOWN_LABELS = 12;
let front = 0;
let labels = cfg.labels;
let minedLabels = [...cfg.filters.labels];  // the label filter's: labels clips were mined as
let list = [];
let cursor = null;
let exhausted = false;
let fetching = null;
let generation = 0;
let skipped = 0;
let reviewed = 0;
let remaining = null;
let chain = Promise.resolve();
let keys = Promise.resolve();
let inflight = 0;
let matches = [];
let chosen = 0;
const unplayable = new Map();
const voteTimes = [];

function text(el, value) { el.textContent = value == null ? '' : String(value); }
function fmt(x) { return x == null ? '' : Number(x).toFixed(2); }
function percent(x) { return x == null ? '' : Math.round(x * 100) + '%'; }
function say(message) { text($('message'), message); }
function busy(delta) { inflight += delta; document.body.dataset.inflight = String(inflight); }
function current() { return list[0]; }

function filterParams() {
  const p = new URLSearchParams();
  for (const o of $('f-label').selectedOptions) p.append('label', o.value);
  if ($('f-min').value !== '') p.set('min_score', $('f-min').value);
  if ($('f-max').value !== '') p.set('max_score', $('f-max').value);
  if ($('f-all').value === 'disputed') p.set('disputed', '1');
  else p.set('all', $('f-all').value);
  return p;
}

async function call(url, body) {
  busy(1);
  try {
    const headers = {'X-Clipminer-Token': cfg.token};
    const init = {headers: headers};
    if (body !== undefined) {
      init.method = 'POST'; init.body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
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

// -- the player ------------------------------------------------------------------------------

function load(video, e) {
  if (video.dataset.key === (e ? e.key : '')) return;
  video.dataset.key = e ? e.key : '';
  if (e && e.url) { video.src = e.url; video.load(); }
  else { video.removeAttribute('src'); video.load(); }
}

function whyNotPlayable(e) {
  if (!e) return null;
  if (e.missing) return 'the clip file is missing';
  if (!e.url) return 'no clip was cut for it';
  return unplayable.get(e.key) || null;
}

function showPlayable(e) {
  const why = whyNotPlayable(e);
  const box = $('unplayable');
  box.classList.toggle('hidden', !why);
  text(box, why ? 'cannot show this clip: ' + why +
    '. It cannot be voted on; n skips it.' : '');
  document.body.dataset.playable = why ? 'no' : 'yes';
}

for (const video of players) {
  video.addEventListener('error', () => {
    const key = video.dataset.key;
    if (!key || !video.getAttribute('src')) return;
    const code = video.error ? video.error.code : 0;
    unplayable.set(key, code === 4 ? 'the browser cannot play its file' :
      'its file could not be loaded (error ' + code + ')');
    if (current() && current().key === key) showPlayable(current());
  });
}

function shownPlayer() { return players[front]; }

function playPause() {
  const v = shownPlayer();
  if (v.paused) v.play().catch(() => {}); else v.pause();
}

function step(frames) {
  const v = shownPlayer();
  v.pause();
  v.currentTime = Math.max(0, Math.min(v.duration || 0, v.currentTime + frames * FRAME_SECONDS));
}

function replay() {
  const v = shownPlayer();
  v.currentTime = 0; v.play().catch(() => {});
}

// -- the clip shown --------------------------------------------------------------------------

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
  showPlayable(e);
  text($('c-video'), e.video + ' #' + e.clip_id);
  let range = fmt(e.time_start) + '\u2013' + fmt(e.time_end) + ' s';
  if (e.clip_start != null && e.clip_end != null &&
      (Math.abs(e.clip_start - e.time_start) > 0.01 || Math.abs(e.clip_end - e.time_end) > 0.01))
    range += ' (file ' + fmt(e.clip_start) + '\u2013' + fmt(e.clip_end) + ' s)';
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
  position();
  searchLabels();
}

function position() {
  let where = reviewed + ' reviewed here';
  if (remaining != null) {
    const total = reviewed + remaining;
    where = (current() ? 'clip ' + Math.min(reviewed + 1, total) + ' of ' + total : total +
      ' of ' + total) + (skipped ? ', ' + skipped + ' skipped' : '');
  }
  text($('h-position'), where);
  const gaps = [];
  for (let i = 1; i < voteTimes.length; i++) gaps.push(voteTimes[i] - voteTimes[i - 1]);
  gaps.sort((x, y) => x - y);
  if (gaps.length >= 3 && remaining) {
    const seconds = gaps[Math.floor(gaps.length / 2)] / 1000 * remaining;
    text($('h-left'), 'about ' + (seconds < 90 ? Math.round(seconds) + ' s' :
      seconds < 5400 ? Math.round(seconds / 60) + ' min' : (seconds / 3600).toFixed(1) + ' h') +
      ' left at your pace');
  } else text($('h-left'), '');
}

function done() {
  for (const p of players) { p.pause(); p.classList.add('hidden'); }
  $('unplayable').classList.add('hidden');
  $('done').classList.remove('hidden');
  text($('done-note'), skipped ? skipped + ' skipped: press n to go round again' : '');
  for (const id of ['c-video', 'c-range', 'c-verdict', 'c-image-label', 'c-image-score',
    'c-video-label', 'c-video-score']) text($(id), '');
  $('top5').replaceChildren();
  document.body.dataset.state = 'done';
  document.body.dataset.clip = '';
  position();
}

async function show() {
  if (!list.length && !exhausted) await more();
  const e = current();
  if (!e) { done(); return; }
  document.body.dataset.state = 'clip';
  document.body.dataset.clip = e.key;
  render(e);
  load(players[1 - front], list[1]);
  if (list.length < 5 && !exhausted) more().then(() => {
    if (current() === e) load(players[1 - front], list[1]);
  });
}

function restart() {
  generation += 1; list = []; cursor = null; exhausted = false; fetching = null; skipped = 0;
  keys = keys.then(show);
  refresh();
}

// -- votes: each key waits for the one before, so fast typing loses nothing ------------------

function vote(action, label) {
  const e = current();
  if (!e) { say('not taken: no clip is shown'); return Promise.resolve(); }
  const why = whyNotPlayable(e);
  if (why) { say('not taken: ' + why + ', so it cannot be voted on (n skips it)'); return show(); }
  list.shift(); reviewed += 1; voteTimes.push(Date.now());
  if (remaining) remaining -= 1;
  const body = {clip: e.key, action: action, label: label,
                time_start: e.time_start, time_end: e.time_end};
  chain = chain.then(() => call('/api/vote', body))
    .then(() => { say(''); refresh(); },
      (err) => {
        say('vote on ' + e.video + ' #' + e.clip_id + ' not saved: ' + err.message);
        list.unshift(e); reviewed -= 1; keys = keys.then(show); refresh();
      });
  return show();
}

function undo() {
  chain = chain.then(() => call('/api/undo', {})).then((data) => {
    if (!data.clip) { say(data.undone ? 'undone (clip no longer shown)' : 'nothing to undo'); }
    else {
      list = list.filter((x) => x.key !== data.clip.key);
      list.unshift(data.clip); reviewed = Math.max(0, reviewed - 1); say('undone');
      keys = keys.then(show);
    }
    refresh();
  }, (err) => say('undo failed: ' + err.message));
  return chain;
}

function skip() {
  if (!list.length) { if (exhausted) restart(); return Promise.resolve(); }
  list.shift(); skipped += 1;
  return show();
}

function enqueue(fn) {
  keys = keys.then(fn).catch((err) => say(String(err)));
}

// -- the label picker ------------------------------------------------------------------------

function fuzzy(query, label) {
  // lower is better; null: the letters of query are not all in label, in order
  const q = query.toLowerCase().trim(), l = label.toLowerCase();
  if (!q) return 0;
  const at = l.indexOf(q);
  if (at >= 0) return (at === 0 ? 0 : /[\s_\-/]/.test(l[at - 1]) ? 1 : 2) * 1000 + l.length;
  let pos = -1, gaps = 0;
  for (const ch of q) {
    if (/\s/.test(ch)) continue;
    const next = l.indexOf(ch, pos + 1);
    if (next < 0) return null;
    gaps += next - pos - 1; pos = next;
  }
  return 10000 + gaps * 10 + l.length;
}

function searchLabels() {
  const query = $('label-search').value;
  const e = current();
  if (!query.trim()) {
    const guesses = e ? e.top5.map(([label]) => label).filter((l) => labels.includes(l)) : [];
    matches = [...guesses, ...labels.filter((l) => !guesses.includes(l))];
  } else {
    matches = labels.map((l) => [fuzzy(query, l), l]).filter(([s]) => s !== null)
      .sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : 1)).map(([, l]) => l);
  }
  chosen = Math.min(chosen, Math.max(0, matches.length - 1));
  const ol = $('labels');
  ol.replaceChildren();
  matches.slice(0, SHOWN_LABELS).forEach((label, i) => {
    const li = document.createElement('li');
    li.dataset.label = label;
    text(li, label);
    li.classList.toggle('chosen', i === chosen);
    li.classList.toggle('current', !!e && label === e.label);
    li.addEventListener('mousedown', (ev) => { ev.preventDefault(); pick(label); });
    ol.append(li);
  });
  if (matches.length > SHOWN_LABELS) {
    const li = document.createElement('li'); li.className = 'more';
    text(li, '\u2026 ' + (matches.length - SHOWN_LABELS) + ' more: type to narrow');
    ol.append(li);
  }
  if (!matches.length) {
    const li = document.createElement('li'); li.className = 'more';
    text(li, 'no label matches'); ol.append(li);
  }
  text($('label-count'), labels.length);
}

function openPicker() {
  const input = $('label-search');
  input.value = ''; chosen = 0; searchLabels(); input.focus();
  document.body.dataset.picking = '1';
}

function closePicker() {
  const input = $('label-search');
  input.value = ''; chosen = 0; input.blur(); searchLabels();
  document.body.dataset.picking = '';
}

function pick(label) {
  closePicker();
  enqueue(() => vote('relabel', label));
}

$('label-search').addEventListener('input', () => { chosen = 0; searchLabels(); });
$('label-search').addEventListener('blur', () => { document.body.dataset.picking = ''; });
$('label-search').addEventListener('keydown', (ev) => {
  let handled = true;
  if (ev.key === 'ArrowDown') { chosen = Math.min(chosen + 1, Math.min(matches.length,
    SHOWN_LABELS) - 1); searchLabels(); }
  else if (ev.key === 'ArrowUp') { chosen = Math.max(chosen - 1, 0); searchLabels(); }
  else if (ev.key === 'Enter') {
    if (matches[chosen] !== undefined) pick(matches[chosen]); else say('no label matches');
  } else if (ev.key === 'Escape') closePicker();
  else handled = false;
  if (handled) { ev.preventDefault(); ev.stopPropagation(); }
});

// -- progress --------------------------------------------------------------------------------

let refreshTimer = null;
function refresh() {  // at most every 300 ms: a burst of votes asks once
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadProgress(); }, 300);
}

function loadProgress() {
  return call('/api/progress?' + filterParams()).then((data) => {
    if (JSON.stringify(data.labels) !== JSON.stringify(labels)) {
      labels = data.labels; searchLabels();
    }
    const mined = data.rows.map((r) => r.label);
    if (JSON.stringify(mined) !== JSON.stringify(minedLabels)) {
      minedLabels = mined; renderFilterLabels();
    }
    remaining = data.remaining;
    position();
    const body = $('progress');
    body.replaceChildren();
    const keys_ = ['total', 'accepted', 'relabelled', 'rejected', 'disputed', 'pending', 'mine'];
    const sums = {label: 'all'};
    const agreement = data.agreement || {};
    const row = (values, agreed, cls) => {
      const tr = document.createElement('tr'); if (cls) tr.className = cls;
      for (const k of ['label', ...keys_]) {
        const td = document.createElement('td'); text(td, values[k] || 0); tr.append(td);
      }
      for (const value of [agreed ? percent(agreed.percent) : '',
        agreed && agreed.kappa != null ? fmt(agreed.kappa) : '']) {
        const td = document.createElement('td'); text(td, value); tr.append(td);
      }
      body.append(tr);
    };
    for (const r of data.rows) {
      for (const k of keys_) sums[k] = (sums[k] || 0) + r[k];
      row(r, agreement[r.label]);
    }
    row(sums, agreement.all, 'total');
  }, (err) => say('cannot load progress: ' + err.message));
}

function renderFilterLabels() {
  const select = $('f-label');
  const picked = new Set([...select.selectedOptions].map((o) => o.value));
  if (!select.options.length) for (const l of cfg.filters.labels) picked.add(l);
  select.replaceChildren();
  for (const label of minedLabels) {
    const o = document.createElement('option'); o.value = label; text(o, label);
    o.selected = picked.has(label); select.append(o);
  }
}

// -- keys ------------------------------------------------------------------------------------

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName)) {
    if (ev.key === 'Escape' || ev.key === 'Enter') t.blur();
    return;
  }
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  let handled = true;
  if (k === 'a') enqueue(() => vote('accept', null));
  else if (k === 'r') enqueue(() => vote('reject', null));
  else if (k === 'l' || k === '/') openPicker();  // at once: what follows is the search
  else if (k === 'u') enqueue(undo);
  else if (k === 'n') enqueue(skip);
  else if (k === ' ') playPause();
  else if (k === ',') step(-1);
  else if (k === '.') step(1);
  else if (k === 'p') replay();
  else if (/^[0-9]$/.test(k)) say('numbers do nothing: press l and type a label\'s name');
  else handled = false;
  if (handled) ev.preventDefault();
});

for (const [id, fn] of [['b-accept', () => vote('accept', null)],
  ['b-reject', () => vote('reject', null)], ['b-undo', undo], ['b-skip', skip]]) {
  $(id).addEventListener('click', (ev) => { ev.currentTarget.blur(); enqueue(fn); });
}
$('b-relabel').addEventListener('click', (ev) => { ev.currentTarget.blur(); openPicker(); });
for (const id of ['f-label', 'f-min', 'f-max', 'f-all']) {
  $(id).addEventListener('change', () => restart());
}

text($('h-out'), cfg.out);
text($('h-reviewer'), cfg.reviewer);
text($('h-rule'), (cfg.rule.votes > 1 ? 'rule: ' + cfg.rule.agree + ' of ' + cfg.rule.votes +
  ' votes agree' : 'rule: one vote decides') + (cfg.order === 'uncertain' ?
  '; most uncertain first' : ''));
if (cfg.rule_note) $('h-rule').title = cfg.rule_note;
if (cfg.filters.min_score != null) $('f-min').value = cfg.filters.min_score;
if (cfg.filters.max_score != null) $('f-max').value = cfg.filters.max_score;
$('f-all').value = cfg.filters.disputed ? 'disputed' : cfg.filters.include_voted ? '1' : '0';
renderFilterLabels();
searchLabels();
refresh();
keys = keys.then(show);
