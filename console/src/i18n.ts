// Every word the console shows, Chinese first (the monitoring centre's language), English
// as the toggle. Terms follow docs/glossary.md.

export type Lang = "zh" | "en";

const WORDS = {
  // shell
  "app.title": ["fencewatch 电子定位监管", "fencewatch electronic monitoring"],
  "app.center": ["监控中心", "Monitoring center"],
  "nav.live": ["实时地图", "Live map"],
  "nav.person": ["一人一档", "Person file"],
  "nav.zones": ["区域", "Zones"],
  "nav.leave": ["外出", "Leave"],
  "lang.toggle": ["English", "中文"],
  logout: ["退出", "Log out"],
  "feed.up": ["实时连接正常", "Live feed connected"],
  "feed.down": ["实时连接中断，正在重连…", "Live feed lost, reconnecting…"],
  readonly: ["只读", "read-only"],
  // login
  "login.title": ["登录监控中心", "Log in to the monitoring center"],
  "login.token": ["访问令牌", "Access token"],
  "login.hint": [
    "令牌由管理员用 fencewatch token create 生成。",
    "An administrator creates tokens with fencewatch token create.",
  ],
  "login.submit": ["登录", "Log in"],
  "login.bad": ["令牌无效、已过期或已吊销", "The token is invalid, expired or revoked"],
  // roles
  "role.operator": ["监控中心值班员", "Monitoring-center operator"],
  "role.officer": ["司法所工作人员", "Justice-station officer"],
  "role.supervisor": ["县级司法局", "County bureau"],
  "role.auditor": ["检察院（只读）", "Procuratorate (read-only)"],
  // map states
  "state.ok": ["正常", "OK"],
  "state.uncertain": ["定位不确定", "Uncertain"],
  "state.outside": ["区域外（待确认）", "Outside (unconfirmed)"],
  "state.breach": ["越界", "Breach"],
  "state.still_breach": ["仍在越界（已处置）", "Still in breach (resolved)"],
  "state.offline": ["设备离线", "Offline"],
  "state.unknown": ["未知", "Unknown"],
  "state.sos": ["紧急求助", "SOS"],
  "state.tamper": ["防拆告警", "Strap tamper"],
  "state.low_battery": ["电量低", "Low battery"],
  "map.legend": ["图例", "Legend"],
  "map.noTiles": ["无底图：仅显示矢量图层", "No base map: vector layers only"],
  "map.people": ["在册定位 {n} 人", "{n} people located"],
  // zones
  "kind.jurisdiction": ["执行地", "Jurisdiction"],
  "kind.exclusion": ["禁入区域", "Exclusion zone"],
  "kind.home": ["居住地（居家时段）", "Home zone (curfew)"],
  // alerts
  "queue.title": ["告警队列", "Alert queue"],
  "queue.empty": ["暂无未处置告警", "No open alerts"],
  "queue.help": ["按 ? 查看快捷键", "Press ? for keys"],
  "queue.new": ["新告警", "New alert"],
  "queue.newCount": ["{n} 条告警待签收", "{n} alerts to acknowledge"],
  "queue.critical": ["紧急 {n} 条", "{n} critical"],
  "type.jurisdiction_exit": ["越界（离开执行地）", "Left jurisdiction"],
  "type.exclusion_enter": ["进入禁入区域", "Entered exclusion zone"],
  "type.curfew_breach": ["居家时段不在居住地", "Curfew breach"],
  "type.device_offline": ["设备离线（失联/关机）", "Device offline"],
  "type.no_fix": ["无定位信号", "No position fix"],
  "type.low_battery": ["电量低", "Low battery"],
  "type.strap_tamper": ["防拆告警", "Strap tamper"],
  "type.sos": ["紧急求助", "SOS"],
  "type.device_separation": ["人机分离", "Device separation"],
  "type.checkin_missed": ["签到未完成", "Check-in missed"],
  "type.contact": ["违反禁止接触", "No-contact order broken"],
  "type.gathering": ["聚集", "Gathering"],
  "type.engine_fault": ["无法判定（系统故障）", "Cannot be judged (engine fault)"],
  "type.power_off": ["关机", "Power off"],
  "type.protected_proximity": ["接近被保护人", "Near a protected person"],
  "severity.critical": ["紧急", "Critical"],
  "severity.high": ["高", "High"],
  "severity.normal": ["中", "Normal"],
  "severity.low": ["低", "Low"],
  "status.open": ["待签收", "Open"],
  "status.acknowledged": ["已签收", "Acknowledged"],
  "status.resolved": ["已处置", "Resolved"],
  "alert.raised": ["告警时间", "Raised"],
  "alert.since": ["已过 {d}", "{d} ago"],
  "alert.escalation": ["已升级 {n} 级", "Escalated ×{n}"],
  "alert.told": ["已通知：{who}", "Told: {who}"],
  "alert.late": ["补传发现", "Found late"],
  "alert.cleared": ["已恢复", "Condition cleared"],
  "alert.fixTime": ["定位时间", "Fix time"],
  "alert.ack": ["签收", "Acknowledge"],
  "alert.resolve": ["处置", "Resolve"],
  "alert.openFile": ["一人一档", "Person file"],
  "alert.showMap": ["地图定位", "Show on map"],
  "alert.locate": ["立即定位", "Locate now"],
  "evidence.export": ["导出证据包", "Export evidence"],
  "evidence.exporting": ["正在生成…", "Preparing…"],
  "evidence.done": [
    "已导出证据包 {name}（已记入审计日志）",
    "Exported {name} (recorded in the audit log)",
  ],
  "alert.apart": [
    "{device} 距本人（{with}）{km} 公里",
    "{device} {km} km from the person ({with})",
  ],
  "alert.stillReporting": ["{devices} 仍在上报", "{devices} still reporting"],
  "alert.stationary": [
    "手机已静止 {h} 小时（平时最长 {usual} 小时）",
    "phone still {h} h (usually at most {usual} h)",
  ],
  "alert.disposition": ["处置结果", "Disposition"],
  "alert.note": ["处置说明（必填）", "What was found and done (required)"],
  "alert.submit": ["提交处置", "Resolve alert"],
  "alert.cancel": ["取消", "Cancel"],
  "alert.noteNeeded": ["请填写处置说明", "Please write a note"],
  "alert.stillInBreach": ["仍在越界", "Still in breach"],
  "alert.stillHint": [
    "已处置（{disposition}），本人尚未返回；系统判定返回后移出队列",
    "Resolved ({disposition}), the person is not back yet; leaves the queue once they are",
  ],
  "alert.activeWarning": [
    "注意：{name}仍在越界，尚未返回。处置后此告警仍留在队列中，标为“仍在越界”，直到系统判定本人返回。",
    "Note: {name} is still in breach and not back yet. Resolved, this alert stays in the queue as “still in breach” until the service sees them back.",
  ],
  "alert.confirmActive": [
    "确认处置：{name}此刻仍在越界。再按 Ctrl+Enter 或点“确认处置”；Esc 取消。",
    "Confirm: {name} is still in breach right now. Press Ctrl+Enter again or click Confirm; Esc cancels.",
  ],
  "alert.confirmSubmit": ["确认处置（本人仍在越界）", "Confirm (still in breach)"],
  "alert.reason": ["误报原因", "Why a false alarm"],
  "alert.reasonPick": ["请选择误报原因", "Choose why"],
  "alert.reasonNeeded": [
    "本人仍在越界：判为误报须选择原因",
    "Still in breach: a false alarm needs a reason",
  ],
  "reason.verified_in_place": [
    "已核实本人在允许区域内（电话/视频/走访）",
    "Verified in place (call, video call or visit)",
  ],
  "reason.position_drift": ["定位漂移", "Position drift"],
  "reason.zone_error": ["区域划设有误", "Zone drawn wrong"],
  "disposition.true_violation": ["属实违规", "True violation"],
  "disposition.false_alarm": ["误报", "False alarm"],
  "disposition.approved_absence": ["经批准外出", "Approved absence"],
  "disposition.equipment_fault": ["设备故障", "Equipment fault"],
  // keyboard help
  "keys.title": ["快捷键", "Keyboard"],
  "keys.jk": ["下一条 / 上一条告警", "Next / previous alert"],
  "keys.a": ["签收所选告警", "Acknowledge the selected alert"],
  "keys.r": [
    "处置所选告警（1–4 选处置结果后输入说明，Ctrl+Enter 提交）",
    "Resolve the selected alert (1–4 pick a disposition, then write the note; Ctrl+Enter submits)",
  ],
  "keys.o": ["打开一人一档", "Open the person file"],
  "keys.m": ["在地图上定位", "Show on the map"],
  "keys.l": [
    "立即定位：要求该对象的全部设备马上上报位置",
    "Locate now: ask every device of the person for a fix at once",
  ],
  "keys.views": [
    "切换：实时地图 / 一人一档 / 区域 / 外出",
    "Switch: live map / person file / zones / leave",
  ],
  "keys.help": ["显示 / 关闭本帮助", "Show / hide this help"],
  "keys.esc": ["关闭对话框", "Close a dialog"],
  // person file
  "person.pick": ["选择社区矫正对象", "Choose a supervisee"],
  "person.none": ["请选择一名社区矫正对象", "Choose a supervisee"],
  "person.profile": ["基本信息", "Profile"],
  "person.id": ["编号", "ID"],
  "person.name": ["姓名", "Name"],
  "person.office": ["司法所", "Justice station"],
  "person.officer": ["责任人", "Officer"],
  "person.level": ["管理等级", "Supervision level"],
  "person.term": ["矫正期限", "Supervision term"],
  "person.status": ["状态", "Status"],
  "person.jurisdiction": ["执行地", "Jurisdiction"],
  "person.exclusion": ["禁入区域（禁止令）", "Exclusion zones (prohibition order)"],
  "person.home": ["居住地", "Home zone"],
  "person.devices": ["电子定位装置与电量", "Devices and battery"],
  "person.lastFix": ["最近定位", "Last fix"],
  "person.battery": ["电量", "Battery"],
  "person.orders": ["使用电子定位装置决定", "Monitoring orders"],
  "person.score": ["每月计分考评", "Monthly assessment"],
  "score.month": ["{month} 月：", "{month}: "],
  "score.points": ["{n} 分", "{n} points"],
  "score.deducted": ["（基础分 {base}，扣 {n} 分）", "(base {base}, {n} deducted)"],
  "score.none": ["本月无扣分记录", "No deductions this month"],
  "person.leaves": ["外出（请假）", "Leave"],
  "person.noLeaves": ["无外出记录", "No leave"],
  "person.returnBtn": ["销假", "Report back"],
  "person.alerts": ["告警与处置记录", "Alerts and dispositions"],
  "person.noAlerts": ["无告警记录", "No alerts"],
  "person.active": ["在矫", "Active"],
  "person.released": ["已解矫", "Released"],
  "level.strict": ["严管", "Strict"],
  "level.normal": ["普管", "Normal"],
  "level.lenient": ["宽管", "Lenient"],
  "device.tag": ["电子腕带/脚环", "Ankle tag"],
  "device.phone": ["手机", "Phone"],
  "leave.requested": ["待审批", "Requested"],
  "leave.overdue": ["逾期未销假", "Overdue"],
  "leave.approve": ["同时批准", "Approve now"],
  "leave.approveBtn": ["批准", "Approve"],
  "leave.refuseBtn": ["不予批准", "Refuse"],
  "leave.refuseReason": ["不予批准的理由", "Reason for refusal"],
  "office.station": ["司法所", "justice station"],
  "office.county": ["县级社区矫正机构", "county bureau"],
  "office.city": ["市级社区矫正机构", "city bureau"],
  "order.until": ["{from} 至 {to}", "{from} to {to}"],
  "order.left": ["剩 {n} 天", "{n} days left"],
  "order.ended": ["已解除", "Removed"],
  "person.noOrders": ["无使用电子定位装置决定", "No monitoring orders"],
  "leave.approved": ["已批准", "Approved"],
  "leaveKind.leave": ["外出", "Leave"],
  "leaveKind.permit": ["经常性跨市县活动", "Recurring permit"],
  "leaves.active": ["在外", "Away now"],
  "leaves.upcoming": ["即将外出", "Leaving soon"],
  "leaves.overdue": ["逾期未销假", "Overdue, not reported back"],
  "leaves.requested": ["待审批", "Waiting for a decision"],
  "leaves.none": ["无", "None"],
  "leaves.days": ["{n} 天", "{n} days"],
  "chain.title": ["审批流程", "Approval chain"],
  "chain.applied": ["申请", "Applied by"],
  "chain.loaded": ["名册导入", "Imported with the roster"],
  "chain.needs": ["须由{level}审批", "Decided by the {level}"],
  "chain.waiting": ["等待审批", "Waiting for a decision"],
  "chain.approved": ["批准", "Approved by"],
  "chain.refused": ["不予批准", "Refused by"],
  "chain.returned": ["销假", "Reported back"],
  "leave.refused": ["不予批准", "Refused"],
  "leave.cancelled": ["已撤销", "Cancelled"],
  // suspension windows (暂停告警)
  "alert.held": ["已暂停", "Suspended"],
  "alert.heldWhy": [
    "已暂停（{reason}），{until} 自动恢复",
    "Suspended ({reason}), resumes {until}",
  ],
  "person.suspensions": ["暂停告警", "Alert suspensions"],
  "person.noSuspensions": ["无暂停告警记录", "No suspensions"],
  "suspendReason.hospital": ["住院", "In hospital"],
  "suspendReason.detention": ["羁押", "Detained"],
  "suspendReason.court": ["出庭", "Court appearance"],
  "suspendReason.other": ["其他", "Other"],
  "suspension.requested": ["待审批", "Awaiting approval"],
  "suspension.approved": ["已批准", "Approved"],
  "suspension.refused": ["不予批准", "Refused"],
  "suspension.revoked": ["已撤销", "Revoked"],
  "suspension.inForce": ["生效中", "In force"],
  "suspension.allTypes": ["全部告警类型", "All alert types"],
  "suspension.types": ["暂停的告警类型", "Alert types to hold"],
  "suspension.reason": ["原因", "Reason"],
  "suspension.reasonText": ["情况说明", "Circumstances"],
  "suspension.to": ["恢复时间", "Resumes at"],
  "suspension.submit": ["申请暂停告警", "Ask to suspend alerts"],
  "suspension.ok": ["暂停告警申请已提交，待审批", "Suspension asked for; awaiting approval"],
  "suspension.help": [
    "经批准后生效：期间照常判定和记录，所选类型的告警暂不通知、不升级，到期或撤销后自动恢复。",
    "Takes effect once approved: everything is still judged and recorded; alerts of these types are held (not sent, not escalated) and resume when it ends or is revoked.",
  ],
  "suspension.askedBy": ["申请人 {who}", "Asked by {who}"],
  "suspension.approvedBy": ["批准人 {who}", "Approved by {who}"],
  "suspension.revokedBy": ["{who} 于 {t} 撤销", "Revoked by {who} at {t}"],
  "suspension.approveBtn": ["批准暂停", "Approve"],
  "suspension.refuseBtn": ["不予批准", "Refuse"],
  "suspension.refuseReason": ["不予批准的理由", "Reason for refusal"],
  "suspension.revokeBtn": ["撤销（恢复告警）", "Revoke (resume alerts)"],
  "suspension.revokeReason": ["撤销的理由", "Reason for revoking"],
  // track playback
  "track.title": ["轨迹回放", "Track playback"],
  "track.from": ["开始", "From"],
  "track.to": ["结束", "To"],
  "track.load": ["查询轨迹", "Load track"],
  "track.play": ["播放", "Play"],
  "track.pause": ["暂停", "Pause"],
  "track.count": ["共 {n} 个定位点", "{n} fixes"],
  "track.empty": ["该时段无定位", "No fixes in this range"],
  "track.breach": ["越界段 {n} 个定位点（红色）", "{n} fixes in the breach stretch (red)"],
  "track.acc": ["精度半径 {m} 米", "accuracy {m} m"],
  "track.accUnknown": ["精度未知", "accuracy unknown"],
  "track.showAcc": ["精度圈", "Accuracy circles"],
  "track.destination": ["外出目的地", "Leave destination"],
  "track.crossing": ["越界位置", "Where it crossed"],
  "track.lastIn": ["最后区域内", "last inside"],
  "track.firstOut": ["首个区域外", "first outside"],
  "zone.in": ["区域内", "inside"],
  "zone.out": ["区域外", "outside"],
  "zone.uncertain": ["不确定", "uncertain"],
  "quality.NO_FIX": ["无定位", "no fix"],
  "quality.ACC_UNKNOWN": ["精度未知", "accuracy unknown"],
  "quality.ACC_POOR": ["精度差", "poor accuracy"],
  "quality.JUMP": ["跳点", "jump"],
  "quality.LATE": ["补传", "late upload"],
  "quality.OUT_OF_ORDER": ["乱序", "out of order"],
  "quality.GCJ02": ["GCJ-02 已转换", "converted from GCJ-02"],
  "quality.DUPLICATE": ["重复", "duplicate"],
  // check-ins
  "person.checkins": ["定位签到（近 7 天）", "Check-ins (last 7 days)"],
  // people near people
  "person.workplace": ["工作单位", "Workplace"],
  "person.workplaceCircle": ["{name}（半径 {r} 米）", "{name} ({r} m round)"],
  "person.apart": ["禁止接触", "No contact"],
  "person.noApart": ["无禁止接触令，无被保护人", "No no-contact orders or protected persons"],
  "apart.order": [
    "禁止接触令 {id}：与 {others} 保持 {m} 米以上（持续 {min} 分钟即告警）",
    "No-contact order {id}: at least {m} m from {others} (an alert after {min} min)",
  ],
  "apart.protected": [
    "被保护人 {who}：手机 {device}（{via}），{m} 米内持续 {s} 秒即告警",
    "Protected person {who}: phone {device} ({via}), an alert within {m} m for {s} s",
  ],
  "apart.sms": ["短信预警 {sms}", "warned by SMS at {sms}"],
  "apart.noSms": ["不发短信预警", "no SMS warning"],
  "apart.end": ["解除", "End"],
  "apart.endReason": ["解除原因", "Why it ends"],
  "apart.endConfirm": ["确认解除", "Confirm: end it"],
  "apart.cancel": ["取消", "Cancel"],
  "apart.endOrderWarn": [
    "解除后不再比对双方位置、不再告警；已有告警保留。",
    "Once ended, the two are no longer compared and no alert is raised; past alerts stay.",
  ],
  "apart.endProtectedWarn": [
    "解除保护后，被保护人的手机登记和告警中记录的其位置将被永久删除，无法恢复。",
    "Once ended, the protected person's phone registration and every position of theirs kept in alerts are deleted for good.",
  ],
  "apart.orderEnded": ["已解除禁止接触令 {id}", "No-contact order {id} ended"],
  "apart.protectedEnded": ["已解除对被保护人 {id} 的保护", "Protection {id} ended"],
  "apart.addOrder": ["添加禁止接触令", "Add a no-contact order"],
  "apart.other": ["禁止接触的社区矫正对象", "Supervisee to keep apart from"],
  "apart.pickOther": ["请选择", "Choose"],
  "apart.distance": ["保持距离（米）", "Distance (m)"],
  "apart.confirmS": ["持续多久即告警（秒）", "Alert after (s)"],
  "apart.note": [
    "禁止令文书号 / 备注（记入审计日志）",
    "Order number / note (kept in the audit log)",
  ],
  "apart.addOrderSubmit": ["添加禁止接触令", "Add the order"],
  "apart.orderAdded": ["已添加禁止接触令 {id}", "No-contact order {id} added"],
  "apart.addProtected": ["登记被保护人", "Register a protected person"],
  "apart.name": ["被保护人称呼（如 王女士，可不填）", "What to call them (optional)"],
  "apart.phoneId": ["被保护人手机设备编号", "Phone's device id"],
  "apart.via": ["上报方式", "Reports by"],
  "apart.ident": [
    "上报标识（OwnTracks：用户/设备；Traccar Client：设备标识）",
    "Its id (OwnTracks: user/device; Traccar Client: device identifier)",
  ],
  "apart.smsNumber": ["短信预警号码（可不填）", "Number for SMS warnings (optional)"],
  "apart.protectedHelp": [
    "只登记手机，不显示被保护人的位置。",
    "Only the phone is registered; where the protected person is is never shown.",
  ],
  "apart.addProtectedSubmit": ["登记被保护人", "Register"],
  "apart.protectedAdded": ["已登记被保护人 {id}", "Protected person {id} registered"],
  "apart.replacePhone": ["更换手机", "Replace the phone"],
  "apart.replaceSubmit": ["确认更换", "Replace"],
  "apart.phoneReplaced": [
    "已更换被保护人 {id} 的手机（短信预警号码不变）",
    "Phone of protected person {id} replaced (SMS number kept)",
  ],
  "checkin.none": ["近 7 天无签到任务", "No check-ins in the last 7 days"],
  "checkin.noRate": ["尚无已结束的签到", "None settled yet"],
  "checkin.rate": [
    "签到率 {pct}%（完成 {answered}，未完成 {missed}）",
    "{pct}% answered ({answered} answered, {missed} missed)",
  ],
  "checkinStatus.answered": ["已签到", "Answered"],
  "checkinStatus.missed": ["未签到", "Missed"],
  "checkinStatus.pending": ["待签到", "Waiting"],
  "checkinReason.no_fix": ["未签到：手机无定位回传", "Missed: no fix from the phone"],
  "checkinReason.poor_fix": ["未签到：定位精度不足", "Missed: the fix was too coarse"],
  "checkinReason.no_face": ["未签到：未完成人脸核验", "Missed: no face verification"],
  "checkinReason.face_failed": ["未签到：人脸核验未通过", "Missed: face verification failed"],
  // locate now
  "locate.title": ["立即定位", "Locate now"],
  "locate.asking": ["正在下发定位指令…", "Asking the devices…"],
  "locate.waiting": ["等待回传", "waiting for its fix"],
  "locate.answer": ["已回传 {t}，精度 {m} 米", "answered {t}, accuracy {m} m"],
  "locate.noDownlink": [
    "该手机无下行通道（OsmAnd），无法下发，以其下一次上报为准",
    "no downlink (OsmAnd phone): not asked; its next report counts",
  ],
  "locate.noAnswer": [
    "仍有设备未回传：可能关机、无信号或不在身边",
    "Some devices have not answered: off, out of coverage, or not with the person",
  ],
  "command.queued": ["指令排队中", "command queued"],
  "command.delivered_to_broker": ["指令已送达服务器", "command with the broker"],
  "command.acknowledged_by_device": ["设备已确认指令", "device acknowledged"],
  // zones and leave
  "zones.list": ["区域", "Zones"],
  "zones.import": [
    "导入边界文件（DataV 格式 GeoJSON）",
    "Import a boundary file (DataV-style GeoJSON)",
  ],
  "zones.file": ["文件", "File"],
  "zones.crs": ["坐标系", "CRS"],
  "zones.kind": ["类型", "Kind"],
  "zones.importBtn": ["导入", "Import"],
  "zones.imported": ["已导入 {n} 个区域：{ids}", "Imported {n} zones: {ids}"],
  "zones.draw": ["绘制 / 编辑区域", "Draw / edit a zone"],
  "zones.circle": ["画圆", "Circle"],
  "zones.polygon": ["画多边形", "Polygon"],
  "zones.finish": ["完成多边形", "Finish polygon"],
  "zones.drawHint": [
    "画圆：在地图上点击圆心；画多边形：依次点击顶点后点“完成多边形”。",
    "Circle: click the centre on the map. Polygon: click the corners, then Finish.",
  ],
  "zones.id": ["区域编号", "Zone ID"],
  "zones.name": ["名称", "Name"],
  "zones.radius": ["半径（米）", "Radius (m)"],
  "zones.schedule": ["生效时段（不填 = 始终）", "Schedule (none = always)"],
  "zones.addWindow": ["添加时段", "Add a window"],
  "zones.save": ["保存区域", "Save zone"],
  "zones.saved": ["已保存区域 {id}", "Saved zone {id}"],
  "zones.edit": ["编辑", "Edit"],
  "zones.noShape": ["请先在地图上绘制圆或多边形", "Draw a circle or polygon on the map first"],
  "zones.readonly": [
    "只有监控中心可以导入和编辑区域",
    "Only the monitoring center can import and edit zones",
  ],
  days: ["一,二,三,四,五,六,日", "Mon,Tue,Wed,Thu,Fri,Sat,Sun"],
  "leave.title": ["外出申请（请假）", "Apply for leave"],
  "leave.person": ["社区矫正对象", "Supervisee"],
  "leave.from": ["外出开始", "From"],
  "leave.to": ["返回期限", "Back by"],
  "leave.destinations": ["目的地（区域）", "Destinations (zones)"],
  "leave.reason": ["事由", "Reason"],
  "leave.submit": ["提交外出申请", "Apply for leave"],
  "leave.ok": ["外出申请已登记：{status}", "Leave recorded: {status}"],
  "leave.readonly": [
    "外出由司法所或县级司法局审批登记",
    "Leave is approved and recorded by a justice station or county bureau",
  ],
  // errors
  "error.prefix": ["操作未成功：", "Not done: "],
  "error.network": ["无法连接服务", "Cannot reach the service"],
  saving: ["提交中…", "Submitting…"],
} as const satisfies Record<string, readonly [string, string]>;

export type Key = keyof typeof WORDS;

let lang: Lang = localStorage.getItem("fencewatch.lang") === "en" ? "en" : "zh";

export function currentLang(): Lang {
  return lang;
}

export function setLang(next: Lang): void {
  lang = next;
  localStorage.setItem("fencewatch.lang", next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
}

/** The word for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key: Key, vars: Record<string, string | number> = {}): string {
  const text: string = WORDS[key][lang === "zh" ? 0 : 1];
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? ""));
}

/** A value from the API (alert type, state, ...) in words; the raw value if unknown. */
export function term(group: string, value: string | null | undefined): string {
  if (!value) return "";
  const key = `${group}.${value}`;
  return key in WORDS ? t(key as Key) : value;
}

export function locale(): string {
  return lang === "zh" ? "zh-CN" : "en-GB";
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "";
  return new Date(iso).toLocaleString(locale(), { hour12: false });
}

/** "3 分 12 秒" / "3 min 12 s": how long ago, coarse enough to read at a glance. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const units: [number, string, string][] = [
    [86400, "天", "d"],
    [3600, "小时", "h"],
    [60, "分", "min"],
    [1, "秒", "s"],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [size, zh, en] of units) {
    const n = Math.floor(rest / size);
    if (n > 0 || (size === 1 && parts.length === 0)) {
      parts.push(lang === "zh" ? `${n}${zh}` : `${n} ${en}`);
      rest -= n * size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(lang === "zh" ? "" : " ");
}
