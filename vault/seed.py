"""Realistic synthetic zh_CN archives for the demo and the benchmarks.

Faker is slow per call (tens of microseconds), so a pool of names, addresses
and companies is drawn once and recombined; numbers that must be unique
(mobiles, ID numbers, plates) are generated directly, with valid checksums.
Everything produced is in the import format, so it exercises the same path
as a real import.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faker import Faker

from vault.formats import id_check_char

DEMO_SALESPEOPLE = (
    ("zhang.wei", "销售一部"),
    ("li.na", "销售一部"),
    ("wang.fang", "销售二部"),
    ("liu.yang", "销售二部"),
)
DEMO_CUSTODIAN = "chen.jing"
# Custodians of the demo's secret and top-secret archives, taken in turn: the two
# information officers and the supervisor (cli.service.DEMO_USERS). With one
# officer keeping every archive, that officer would sign both the officer's and
# the custodian's stage of every top-secret request, which one person never
# does; spread out, the other officer signs the officer's stage.
DEMO_CUSTODIANS = (DEMO_CUSTODIAN, "huang.min", "zhao.lei")
_AREAS = ("010", "021", "020", "0755", "0571", "028", "027", "025", "0371", "029")
_PROVINCE_CHARS = "京沪粤浙苏川鄂豫陕"
_REGIONS = ("110101", "310104", "440106", "330106", "320102", "510104", "420106", "410105")
_PHRASES: dict[str, Sequence[str]] = {
    "education": ("本科，武汉大学", "硕士，复旦大学，在意学位", "大专", "博士，清华大学", "高中"),
    "family_relations": ("三口之家，关系融洽", "与父母同住，关系和睦", "夫妻分居两地"),
    "spouse": ("配偶在银行工作", "配偶为中学教师", "配偶经营餐饮店"),
    "spouse_education": ("本科", "硕士", "大专"),
    "spouse_interests": ("瑜伽、旅游", "摄影", "烹饪、园艺"),
    "parents": ("父母均已退休，身体健康，喜欢太极", "父亲有高血压", "母亲喜欢广场舞"),
    "children": ("一子，2015年生，就读实验小学，喜欢钢琴", "一女，2010年生，初中", "暂无子女"),
    "closest_family_member": ("母亲", "配偶", "女儿"),
    "family_income": ("年收入约50万元", "年收入约120万元", "年收入约30万元"),
    "health": ("身体良好", "有轻度高血压，定期复查", "曾做过阑尾手术，目前健康"),
    "favourite_dining": ("午餐公司附近，晚餐中高档酒楼", "喜欢私房菜馆"),
    "favourite_shopping": ("万象城", "太古里", "网购为主"),
    "favourite_cuisine": ("川菜", "粤菜", "西餐", "江浙菜"),
    "drinking": ("少量饮红酒，不反对别人饮酒", "不饮酒"),
    "smoking": ("不抽烟，反对别人抽烟", "抽中华", "已戒烟"),
    "social_organisations": ("台商协会会员", "校友会理事", "高尔夫俱乐部"),
    "sociability": ("热衷", "一般", "较少参加"),
    "dress_style": ("商务正装", "休闲", "讲究品牌"),
    "information_sources": ("朋友介绍", "网络", "报纸广告", "户外广告"),
    "admired_person": ("父亲", "任正非", "曾国藩"),
    "current_housing": (
        "现居高新区某小区，2012年置业，已升值，较满意",
        "租房居住，对目前居住条件不满意",
    ),
    "property_investments": ("另有两套住宅出租", "持有一处商铺", "暂无"),
    "ideal_housing": ("a、c、g", "b、e", "c、d、f"),
    "purchase_reason": ("改善居住", "子女教育", "投资"),
    "purchase_details": ("三室两厅，128平方米，自住", "两室一厅，89平方米，为父母购买"),
    "developer_knowledge": ("了解较多，曾购买本公司物业", "初次了解"),
    "neighbour_standing": ("在意", "不太在意"),
    "car_brand": ("奥迪", "丰田", "比亚迪", "宝马"),
    "travel_mode": ("飞机", "高铁", "自驾"),
    "position": ("总经理", "部门经理", "工程师", "教师", "个体经营者"),
    "career_goals": ("长期：创办自己的公司；短期：晋升总监", "长期：稳定发展；短期：完成项目"),
    "personal_goals": ("长期：环游世界；短期：健身", "长期：子女成才；短期：换房"),
    "proudest_achievement": ("白手起家创办企业", "孩子考上重点大学", "完成马拉松"),
    "independence_of_mind": ("很有主见，不易接受外来意见", "愿意听取建议"),
    "notes": ("对学区房感兴趣", "预算约300万元", "周末方便联系"),
}
_CONSENT_GROUPS = (
    "identity",
    "contact",
    "whereabouts",
    "credentials",
    "family",
    "finance",
    "health",
    "lifestyle",
    "property",
    "career",
    "notes",
)


def schema_fields(schema: Any) -> list[tuple[str, str]]:
    return [(name, spec.group) for name, spec in schema.fields.items()]


class SyntheticArchives:
    """Generates import-format archives; deterministic for a given seed."""

    def __init__(
        self,
        *,
        seed: int = 2026,
        pool: int = 500,
        owners: Sequence[tuple[str, str]] = DEMO_SALESPEOPLE,
        custodian: str | Sequence[str] = DEMO_CUSTODIANS,
        schema: Any = None,
    ) -> None:
        self.rng = random.Random(seed)
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        self.names = [fake.name() for _ in range(pool)]
        self.addresses = [fake.address().replace("\n", " ") for _ in range(pool)]
        self.companies = [fake.company() for _ in range(pool)]
        self.places = [fake.province() + fake.city_name() for _ in range(pool // 5 or 1)]
        self.owners = list(owners)
        self.custodians = (custodian,) if isinstance(custodian, str) else tuple(custodian)
        self._classified = 0
        self._counter = 0
        # A company schema may drop fields and groups: generate only what it declares.
        self._fields = set(schema.fields) if schema is not None else None
        self._groups = set(schema.groups) if schema is not None else None
        self._sensitive = set(schema.sensitive_groups) if schema is not None else None
        self._schema = schema

    def _mobile(self) -> str:
        r = self.rng
        return f"1{r.choice('3456789')}{r.randrange(10**9):09d}"

    def _landline(self) -> str:
        area = self.rng.choice(_AREAS)
        digits = 8 if len(area) == 3 else self.rng.choice((7, 8))
        return f"{area}-{self.rng.randrange(2 * 10 ** (digits - 1), 10**digits)}"

    def _id_number(self) -> str:
        r = self.rng
        birth = date(1960, 1, 1) + timedelta(days=r.randrange(365 * 45))
        first17 = f"{r.choice(_REGIONS)}{birth:%Y%m%d}{r.randrange(1000):03d}"
        return first17 + id_check_char(first17)

    def _plate(self) -> str:
        r = self.rng
        tail = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))
        return f"{r.choice(_PROVINCE_CHARS)}{r.choice('ABCDEFG')}{tail}"

    def one(self, now: datetime | None = None) -> dict[str, Any]:
        r = self.rng
        now = now or datetime.now(UTC)
        self._counter += 1
        owner, department = r.choice(self.owners)
        roll = r.random()
        classification = "top_secret" if roll < 0.02 else "secret" if roll < 0.10 else "internal"
        profile: dict[str, Any] = {
            "name": r.choice(self.names),
            "gender": r.choice(("男", "女")),
            "native_place": r.choice(self.places),
            "marital_status": r.choice(("已婚", "未婚")),
            "mobile_phone": self._mobile(),
            "office_phone": self._landline(),
            "home_phone": self._landline(),
            "company": f"{r.choice(self.companies)}，{r.choice(self.addresses)}",
            "mailing_address": r.choice(self.addresses),
            "licence_plate": self._plate(),
            "id_number": self._id_number(),
        }
        for name, choices in _PHRASES.items():
            if r.random() < 0.8:
                profile[name] = r.choice(choices)
        sensitive = ["whereabouts", "credentials", "family", "finance", "health", "property"]
        if r.random() < 0.15:  # some customers refuse separate consent for health data
            sensitive.remove("health")
            profile.pop("health", None)
        groups = list(_CONSENT_GROUPS)
        if self._fields is not None:
            profile = {k: v for k, v in profile.items() if k in self._fields}
            groups = sorted(self._groups or ())
            refused = {"health"} - set(sensitive)  # the customers who refused health consent
            sensitive = sorted(((self._sensitive or set()) & set(groups)) - refused)
            if refused:
                dropped = {f for f, spec in schema_fields(self._schema) if spec in refused}
                profile = {k: v for k, v in profile.items() if k not in dropped}
        created = now - timedelta(days=r.randrange(1, 3000))
        # A filing names a retention date from today on (lapsed ones: ``records``).
        retention = (now + timedelta(days=r.randrange(365, 3650))).date()
        return {
            "category": "special" if r.random() < 0.2 else "general",
            "grade": r.choices("ABCD", weights=(1, 3, 4, 2))[0],
            "classification": classification,
            "owner": owner,
            "custodian": self._custodian() if classification != "internal" else None,
            "department": department,
            "retention_until": retention.isoformat(),
            "profile": profile,
            "consent": {
                "notice": "隐私告知书 v3",
                "at": created.isoformat(timespec="seconds"),
                "channel": r.choice(("书面", "线上", "电话录音")),
                "groups": groups,
                "sensitive_groups": sensitive,
            },
        }

    def _custodian(self) -> str:
        """The next custodian in turn (not drawn: the other fields' draws stay as seeded)."""
        self._classified += 1
        return self.custodians[(self._classified - 1) % len(self.custodians)]

    def many(self, n: int) -> Iterator[dict[str, Any]]:
        now = datetime.now(UTC)
        for _ in range(n):
            yield self.one(now)

    def records(self, prepare: Callable[[dict[str, Any]], Any], n: int) -> Iterator[Any]:
        """Validated records (``prepare`` is the store's); about 2% lapsed already.

        The lapsed ones stand for archives filed years ago whose retention has
        run out since, so that a demo's sweep has something to list. A filing
        today may not name a past date, so the date is moved back after
        validation; ``seed`` runs only on demo vaults.
        """
        now = datetime.now(UTC)
        for _ in range(n):
            record = prepare(self.one(now))
            if self.rng.random() < 0.02:
                record.retention_until = (now - timedelta(days=self.rng.randrange(1, 200))).date()
            yield record
